//! The connection phase toward a backend: rwsplit logs in as the client's user.
//! Handles mysql_native_password and caching_sha2_password (fast path, and full authentication
//! over the server's RSA key when the server's cache is cold, or in clear over TLS or a
//! socket), and auth switch requests. The TLS upgrade between the greeting and the login is
//! the caller's (`pool::conn::BackendConn::connect`), which owns the socket.

use mysql_common::constants::CapabilityFlags as C;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::auth::{self, Plugin};
use super::frame::{self, FrameError};
use super::handshake::ServerIdentity;
use super::packets;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the server refused the connection: {code} {message}")]
    Refused { code: u16, message: String },
    #[error("the server sent a malformed {0}")]
    Malformed(&'static str),
    #[error("the server asked for auth plugin {0}, which rwsplit does not support")]
    UnsupportedPlugin(String),
    #[error("the server does not speak protocol 4.1")]
    OldServer,
}

impl ConnectError {
    /// The server's own error (code, SQLSTATE-less message), when it sent one.
    pub fn server_error(&self) -> Option<(u16, &str)> {
        match self {
            ConnectError::Refused { code, message } => Some((*code, message)),
            _ => None,
        }
    }
}

/// Who to log in as, and how the connection must behave.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a str>,
    /// Capabilities to ask for (intersected with what the server offers).
    pub capabilities: C,
    pub collation: u8,
}

/// What the server told us during login.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: ServerIdentity,
    pub connection_id: u32,
    /// The capabilities in force on this connection.
    pub capabilities: C,
    /// The status flags of the login's OK: the server's defaults for a new connection
    /// (autocommit, NO_BACKSLASH_ESCAPES from its global sql_mode).
    pub status: u16,
}

/// Capabilities rwsplit always wants toward a backend, whatever the client asked.
pub const BACKEND_BASE: C = C::CLIENT_LONG_PASSWORD
    .union(C::CLIENT_PROTOCOL_41)
    .union(C::CLIENT_TRANSACTIONS)
    .union(C::CLIENT_SECURE_CONNECTION)
    .union(C::CLIENT_MULTI_STATEMENTS)
    .union(C::CLIENT_PLUGIN_AUTH)
    .union(C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(C::CLIENT_CONNECT_ATTRS);

/// The largest RSA public key (PEM) accepted from a server.
const MAX_PUBLIC_KEY: usize = 16 * 1024;

/// The server's greeting, as far as the login needs it.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// The greeting's sequence id (the client answers with the next).
    pub seq: u8,
    /// What the server said of itself, the capabilities it offers among it.
    pub identity: ServerIdentity,
    pub connection_id: u32,
    nonce: Vec<u8>,
    plugin: Plugin,
}

impl Greeting {
    /// Whether the server offers TLS.
    pub fn offers_tls(&self) -> bool {
        self.identity.capabilities.contains(C::CLIENT_SSL)
    }
}

/// Reads the server's greeting (the caller bounds it with a timeout).
pub async fn read_greeting<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Greeting, ConnectError> {
    let mut buf = Vec::with_capacity(256);
    let seq = frame::read_packet(stream, &mut buf, 1 << 16).await?;
    if buf.first() == Some(&0xFF) {
        return Err(refused(&buf));
    }
    // Protocol version 10 is the only one with the 4.1 handshake (HandshakeV9 predates it).
    if buf.first() != Some(&10) {
        return Err(ConnectError::OldServer);
    }
    let greeting: HandshakePacket<'_> = ParseBuf(&buf)
        .parse(())
        .map_err(|_| ConnectError::Malformed("greeting"))?;
    let offered = greeting.capabilities();
    if !offered.contains(C::CLIENT_PROTOCOL_41) {
        return Err(ConnectError::OldServer);
    }
    let mut nonce = greeting.nonce();
    nonce.truncate(20);
    Ok(Greeting {
        seq,
        identity: ServerIdentity {
            version: greeting.server_version_str().into_owned(),
            capabilities: offered,
            collation: greeting.default_collation(),
        },
        connection_id: greeting.connection_id(),
        nonce,
        plugin: greeting
            .auth_plugin_name_ref()
            .and_then(Plugin::from_name)
            .unwrap_or(Plugin::Native),
    })
}

/// The SSL request that asks the server for TLS before the login (sequence id: the greeting's
/// next): the handshake response's first 32 bytes with CLIENT_SSL.
/// The response is built as `authenticate` builds it, so both packets carry the same flags.
pub fn ssl_request(creds: &Credentials<'_>, greeting: &Greeting) -> Vec<u8> {
    let mut out = handshake_response(
        creds,
        greeting.identity.capabilities,
        &greeting.nonce,
        greeting.plugin,
        true,
    );
    out.truncate(32);
    out
}

/// HandshakeResponse41 for `creds`, with CLIENT_SSL when the login goes over TLS.
fn handshake_response(
    creds: &Credentials<'_>,
    offered: C,
    nonce: &[u8],
    plugin: Plugin,
    tls: bool,
) -> Vec<u8> {
    let mut caps = (creds.capabilities | BACKEND_BASE) & offered;
    if tls {
        caps |= C::CLIENT_SSL;
    }
    let scramble = plugin.scramble(nonce, creds.password);
    // Connection attributes only to a server that takes them: HandshakeResponse sets
    // CLIENT_CONNECT_ATTRS whenever attributes are given.
    let attrs = offered.contains(C::CLIENT_CONNECT_ATTRS).then(|| {
        [("_client_name".to_string(), "rwsplit".to_string())]
            .into_iter()
            .collect()
    });
    let resp = HandshakeResponse::new(
        Some(scramble),
        (0, 0, 0),
        Some(creds.user.as_bytes()),
        creds.database.map(str::as_bytes),
        Some(match plugin {
            Plugin::Native => AuthPlugin::MysqlNativePassword,
            Plugin::CachingSha2 => AuthPlugin::CachingSha2Password,
        }),
        caps,
        attrs,
        1 << 30,
    );
    let mut out = Vec::with_capacity(256);
    resp.serialize(&mut out);
    // HandshakeResponse41: capability flags (4), max packet size (4), then the character set.
    // mysql_common derives that byte from a server version; the session's collation goes there.
    if let Some(b) = out.get_mut(8) {
        *b = creds.collation;
    }
    out
}

/// Runs the whole login on an open stream, without TLS (the fake-server tests' entry; rwsplit
/// itself chooses TLS between the greeting and the login, `pool::conn`). The caller bounds it
/// with a timeout. `secure`: the stream is one the server counts as secure (a Unix socket),
/// where caching_sha2_password's full authentication takes the password in clear.
#[cfg(test)]
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    creds: &Credentials<'_>,
    secure: bool,
) -> Result<Session, ConnectError> {
    let greeting = read_greeting(stream).await?;
    authenticate(stream, creds, greeting, false, secure).await
}

/// The login after the greeting: the handshake response and the authentication exchange.
/// `tls`: an SSL request went first and the stream is now TLS (sequence ids count it, and the
/// password may go in clear).
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    creds: &Credentials<'_>,
    greeting: Greeting,
    tls: bool,
    secure: bool,
) -> Result<Session, ConnectError> {
    let secure = secure || tls;
    let mut buf = Vec::with_capacity(256);
    let Greeting {
        seq,
        identity,
        connection_id,
        mut nonce,
        mut plugin,
    } = greeting;
    let offered = identity.capabilities;
    // The SSL request took the greeting's next sequence id.
    let seq = if tls { seq.wrapping_add(1) } else { seq };
    let out = handshake_response(creds, offered, &nonce, plugin, tls);
    // What was really asked for (mysql_common adjusts CONNECT_WITH_DB and CONNECT_ATTRS).
    let caps = out
        .get(..4)
        .map(|b| C::from_bits_truncate(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .unwrap_or((creds.capabilities | BACKEND_BASE) & offered);
    send(stream, seq.wrapping_add(1), &out).await?;

    loop {
        let got = frame::read_packet(stream, &mut buf, 1 << 16).await?;
        let seq = got.wrapping_add(1);
        match buf.first() {
            Some(0x00) => {
                let status = packets::parse_ok(&buf)
                    .map_or(packets::SERVER_STATUS_AUTOCOMMIT, |ok| ok.status);
                return Ok(Session {
                    identity,
                    connection_id,
                    capabilities: caps,
                    status,
                });
            }
            Some(0xFF) => return Err(refused(&buf)),
            Some(0xFE) => {
                let req: AuthSwitchRequest<'_> = ParseBuf(&buf)
                    .parse(())
                    .map_err(|_| ConnectError::Malformed("auth switch request"))?;
                let name = req.auth_plugin().as_bytes().to_vec();
                plugin = Plugin::from_name(&name).ok_or_else(|| {
                    ConnectError::UnsupportedPlugin(String::from_utf8_lossy(&name).into_owned())
                })?;
                nonce = req.plugin_data().to_vec();
                let data = plugin.scramble(&nonce, creds.password);
                send(stream, seq, &data).await?;
            }
            Some(0x01) if plugin == Plugin::CachingSha2 => match buf.get(1) {
                Some(&auth::SHA2_FAST_AUTH_SUCCESS) => {}
                Some(&auth::SHA2_PERFORM_FULL_AUTH) if secure => {
                    // On a secure transport the server reads the password, NUL-terminated, and
                    // answers a public key request as a wrong password (MySQL 8
                    // `caching_sha2_password_authenticate`; mysql_async and libmysqlclient
                    // send it so over a socket or TLS).
                    let mut clear = Vec::with_capacity(creds.password.len() + 1);
                    clear.extend_from_slice(creds.password.as_bytes());
                    clear.push(0);
                    send(stream, seq, &clear).await?;
                }
                Some(&auth::SHA2_PERFORM_FULL_AUTH) => {
                    send(stream, seq, &[auth::SHA2_REQUEST_PUBLIC_KEY]).await?;
                    let got = frame::read_packet(stream, &mut buf, 1 << 16).await?;
                    let pem = match buf.split_first() {
                        // A 4096-bit key's PEM is under 1 KiB; a bigger one would only make the
                        // encryption below run long on the runtime thread.
                        Some((0x01, pem)) if pem.len() <= MAX_PUBLIC_KEY => pem.to_vec(),
                        _ => return Err(ConnectError::Malformed("public key response")),
                    };
                    let secret = auth::xor_password(creds.password, &nonce);
                    // mysql_common's RSA code asserts on bad keys; a bad key from a server must
                    // not take the task down.
                    let enc =
                        std::panic::catch_unwind(|| mysql_common::crypto::encrypt(&secret, &pem))
                            .map_err(|_| ConnectError::Malformed("RSA public key"))?;
                    send(stream, got.wrapping_add(1), &enc).await?;
                }
                _ => return Err(ConnectError::Malformed("caching_sha2_password exchange")),
            },
            _ => return Err(ConnectError::Malformed("authentication reply")),
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, seq: u8, payload: &[u8]) -> Result<u8, FrameError> {
    let next = frame::write_packet(s, seq, payload).await?;
    s.flush().await?;
    Ok(next)
}

fn refused(payload: &[u8]) -> ConnectError {
    match packets::parse_err(payload) {
        Some(e) => ConnectError::Refused {
            code: e.code,
            message: String::from_utf8_lossy(e.message).into_owned(),
        },
        None => ConnectError::Malformed("error packet"),
    }
}

#[cfg(test)]
mod tests;
