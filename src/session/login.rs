//! The connection phase with a client: greeting, password check, auth switch.

use mysql_common::constants::CapabilityFlags as C;

use super::client::ClientIo;
use crate::config::{AuthPluginName, Config};
use crate::error::ClientError;
use crate::protocol::auth::{self, Plugin};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::handshake::{self, HandshakeError, Login, ServerIdentity};
use crate::protocol::packets;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// The name is the client's, unauthenticated: escaped, so a newline in it cannot forge a
    /// log line.
    #[error("access denied for user '{}'", .0.escape_debug())]
    Denied(String),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// A plain connection where `proxy.tls_required` wants TLS.
    #[error("the client did not ask for TLS, which proxy.tls_required requires")]
    Insecure,
    /// The client asked for a character set no server takes for a client's text.
    #[error("the client's character set {0} cannot be used by clients")]
    Charset(&'static str),
}

/// A client that proved its password.
pub struct Accepted {
    pub login: Login,
    /// The sequence id for rwsplit's next packet (the final OK or ERR).
    pub seq: u8,
}

/// A packet of the login phase, at most 64 KiB: a larger one gets the server's "Bad handshake"
/// (MariaDB's answer to connection attributes of 70 KB, for example) before the connection
/// closes. The rest of the packet is read and dropped first (within the handshake timeout that
/// bounds the login): closed with it unread, the socket would send a reset, which can reach
/// the client before the error does.
async fn read_login_packet(client: &mut ClientIo, buf: &mut Vec<u8>) -> Result<u8, LoginError> {
    match frame::read_packet(&mut client.reader, buf, 1 << 16).await {
        Err(e @ FrameError::TooLarge { seq, size, .. }) => {
            let _ = client
                .send_error(seq.wrapping_add(1), &ClientError::bad_handshake())
                .await;
            let unread = size.saturating_sub(buf.len() as u64);
            let mut rest = tokio::io::AsyncReadExt::take(&mut client.reader, unread);
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
            Err(e.into())
        }
        r => Ok(r?),
    }
}

/// The client's first packet after the greeting, into `buf`: an SSL request upgrades the
/// connection to TLS (when `proxy.tls_*` offers it), and the login packet is read over it.
/// Returns the connection, the login packet's sequence id, and whether it came over TLS;
/// `proxy.tls_required` refuses a plain one here.
async fn transport(
    mut client: ClientIo,
    config: &Config,
    peer: &crate::net::Peer,
    buf: &mut Vec<u8>,
) -> Result<(ClientIo, u8, bool), LoginError> {
    let mut seq = read_login_packet(&mut client, buf).await?;
    let mut secure = false;
    if let Some(tls) = &config.proxy.tls
        && handshake::is_ssl_request(buf)
    {
        client = client
            .into_tls(&tls.acceptor)
            .await
            .map_err(LoginError::Tls)?;
        seq = read_login_packet(&mut client, buf).await?;
        secure = true;
    }
    // A Unix socket is a secure transport, as for the server's `require_secure_transport`.
    if config.proxy.tls_required && !secure && !matches!(peer, crate::net::Peer::Unix) {
        let err = ClientError::new(
            3159,
            "08004",
            "Connections using insecure transport are prohibited while \
             --require_secure_transport=ON (proxy.tls_required)",
        );
        let _ = client.send_error(seq.wrapping_add(1), &err).await;
        return Err(LoginError::Insecure);
    }
    Ok((client, seq, secure))
}

/// The login: greeting, TLS if the client asks for it (and `proxy.tls_*` offers it), the
/// client's login packet and its authentication. Returns the client's connection, upgraded to
/// TLS or as it was.
pub async fn accept(
    mut client: ClientIo,
    config: &Config,
    identity: &ServerIdentity,
    connection_id: u32,
    nonce: &[u8; 20],
    peer: &crate::net::Peer,
    status: u16,
) -> Result<(ClientIo, Accepted), LoginError> {
    let plugin = match config.proxy.auth_plugin {
        AuthPluginName::MysqlNativePassword => Plugin::Native,
        AuthPluginName::CachingSha2Password => Plugin::CachingSha2,
    };
    let tls = config.proxy.tls.as_ref();
    let mut offered = identity.capabilities & handshake::PROXY_CAPABILITIES;
    if tls.is_some() {
        offered |= C::CLIENT_SSL;
    }
    let greeting = handshake::greeting(
        identity,
        offered,
        connection_id,
        nonce,
        plugin.name(),
        status,
    );
    client.send(0, &greeting).await?;
    let mut buf = Vec::with_capacity(256);
    let (mut client, seq, secure) = transport(client, config, peer, &mut buf).await?;
    if !secure {
        offered.remove(C::CLIENT_SSL);
    }
    let login = match handshake::parse_login(&buf, offered) {
        Ok(l) => l,
        Err(e) => {
            let err = match e {
                // With TLS configured, a login that says CLIENT_SSL without the upgrade is
                // malformed.
                HandshakeError::TlsRequested if tls.is_some() => ClientError::bad_handshake(),
                HandshakeError::TlsRequested => ClientError::new(
                    1235,
                    "42000",
                    "rwsplit is not configured for TLS connections (proxy.tls_cert, tls_key)",
                ),
                HandshakeError::CompressionRequested => ClientError::new(
                    1235,
                    "42000",
                    "rwsplit does not support the compressed protocol: turn compression off in \
                     the client",
                ),
                _ => ClientError::bad_handshake(),
            };
            let _ = client.send_error(seq.wrapping_add(1), &err).await;
            return Err(e.into());
        }
    };
    let password = config.user(&login.user).map(|u| u.password.clone());
    let client_plugin = login.plugin.as_deref().and_then(Plugin::from_name);
    let mut seq = seq.wrapping_add(1);
    // An unknown user goes through the same steps as a known one with another password, so
    // the replies do not tell which user names exist.
    let ok = match client_plugin {
        Some(p) => {
            let ok = password
                .as_deref()
                .is_some_and(|pw| p.verify(nonce, pw, &login.auth_response));
            // The server answers an empty password with the OK alone (caching_sha2_password
            // sends "fast auth success" only after a scramble); PyMySQL, seeing none, reads
            // the next packet as the OK.
            let empty = password.as_deref().is_some_and(str::is_empty);
            if ok && p == Plugin::CachingSha2 && !empty {
                seq = client
                    .send(seq, &[0x01, auth::SHA2_FAST_AUTH_SUCCESS])
                    .await?;
            }
            ok
        }
        None => {
            // An unknown or absent plugin: ask for mysql_native_password with a fresh look at
            // the same nonce, as servers do.
            let mut req = vec![0xFE];
            req.extend_from_slice(auth::NATIVE.as_bytes());
            req.push(0);
            req.extend_from_slice(nonce);
            req.push(0);
            client.send(seq, &req).await?;
            let s = read_login_packet(&mut client, &mut buf).await?;
            seq = s.wrapping_add(1);
            password
                .as_deref()
                .is_some_and(|pw| Plugin::Native.verify(nonce, pw, &buf))
        }
    };
    if !ok {
        let with_pw = !login.auth_response.is_empty();
        let _ = client
            .send_error(
                seq,
                &ClientError::access_denied(&login.user, &peer.host(), with_pw),
            )
            .await;
        return Err(LoginError::Denied(login.user));
    }
    // As the server refuses it (every backend login would).
    if let Some(charset) = refused_client_charset(login.collation) {
        let _ = client
            .send_error(seq, &refused_charset_error(charset))
            .await;
        return Err(LoginError::Charset(charset));
    }
    Ok((client, Accepted { login, seq }))
}

/// What a COM_CHANGE_USER asks for.
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    /// Two bytes here (a login's is one).
    pub collation: Option<u16>,
    pub plugin: Option<Plugin>,
}

/// Parses COM_CHANGE_USER: user NUL, auth data (u8 length), database NUL, then charset (u16)
/// and plugin name NUL when the client speaks CLIENT_PLUGIN_AUTH.
pub fn parse_change_user(packet: &[u8], caps: C) -> Option<ChangeUser> {
    let mut rest = packet.get(1..)?;
    let take_cstr = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let end = rest.iter().position(|&b| b == 0)?;
        let s = rest[..end].to_vec();
        *rest = &rest[end + 1..];
        Some(s)
    };
    let user = take_cstr(&mut rest)?;
    let n = *rest.first()? as usize;
    let auth_response = rest.get(1..1 + n)?.to_vec();
    rest = &rest[1 + n..];
    let database = take_cstr(&mut rest).unwrap_or_default();
    let mut collation = None;
    let mut plugin = None;
    if rest.len() >= 2 {
        collation = Some(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        if caps.contains(C::CLIENT_PLUGIN_AUTH) {
            plugin = take_cstr(&mut rest).and_then(|p| Plugin::from_name(&p));
        }
    }
    Some(ChangeUser {
        user: String::from_utf8_lossy(&user).into_owned(),
        auth_response,
        database: (!database.is_empty()).then(|| String::from_utf8_lossy(&database).into_owned()),
        collation,
        plugin,
    })
}

/// The OK rwsplit sends when a login succeeds.
/// The final OK of a login, with the status flags the session starts with.
pub fn ok_payload(status: u16) -> Vec<u8> {
    packets::ok_payload(0, 0, status, 0)
}

/// The server's answer to a client asking for a character set it cannot use (1231).
pub fn refused_charset_error(charset: &str) -> ClientError {
    ClientError::new(
        1231,
        "42000",
        format!("Variable 'character_set_client' can't be set to the value of '{charset}'"),
    )
}

/// The character set of `collation` when it is one a server refuses for a client's text
/// (ucs2, utf16, utf16le, utf32: `character_set_client` cannot be set to them).
pub fn refused_client_charset(collation: u8) -> Option<&'static str> {
    use mysql_common::collations::{Collation, CollationId};
    let c = Collation::resolve(CollationId::from(u16::from(collation)));
    let charset = c.charset();
    ["ucs2", "utf16", "utf16le", "utf32"]
        .into_iter()
        .find(|refused| charset.eq_ignore_ascii_case(refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_user_name_cannot_forge_a_log_line() {
        let e = LoginError::Denied("x'\n2026-11-24T00:00:00Z  INFO forged".into());
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("\\n"), "{text}");
    }

    #[test]
    fn change_user_packet_is_parsed() {
        let mut p = vec![0x11];
        p.extend_from_slice(b"bob\0");
        p.push(20);
        p.extend_from_slice(&[7u8; 20]);
        p.extend_from_slice(b"shop\0");
        p.extend_from_slice(&[45, 0]);
        p.extend_from_slice(b"mysql_native_password\0");
        let c = parse_change_user(&p, C::CLIENT_PLUGIN_AUTH).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.auth_response, vec![7u8; 20]);
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.collation, Some(45));
        assert_eq!(refused_client_charset(45), None);
        assert_eq!(refused_client_charset(35), Some("ucs2"));
        assert_eq!(refused_client_charset(54), Some("utf16"));
        assert_eq!(refused_client_charset(60), Some("utf32"));
        assert_eq!(refused_client_charset(255), None);
        assert_eq!(c.plugin, Some(Plugin::Native));
    }

    #[test]
    fn truncated_change_user_is_none_not_a_panic() {
        let mut p = vec![0x11];
        p.extend_from_slice(b"bob\0");
        p.push(20);
        p.extend_from_slice(&[7u8; 5]);
        for n in 0..p.len() {
            let _ = parse_change_user(&p[..n], C::CLIENT_PLUGIN_AUTH);
        }
        assert!(parse_change_user(&p, C::CLIENT_PLUGIN_AUTH).is_none());
    }
}
