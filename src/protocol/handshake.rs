//! The connection phase toward clients: rwsplit's greeting and the client's login packet.
//! Packet layouts come from `mysql_common`; this file only decides what rwsplit announces.

use mysql_common::constants::{CapabilityFlags as C, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed login packet from the client: {0}")]
    MalformedLogin(std::io::Error),
    #[error("the client asked for TLS, which this rwsplit does not offer (proxy.tls_cert)")]
    TlsRequested,
    #[error("the client does not speak protocol 4.1")]
    OldProtocol,
    #[error("the client asked for the compressed protocol, which rwsplit does not offer")]
    CompressionRequested,
}

/// Capabilities rwsplit can carry through faithfully. Not here: CLIENT_SSL and CLIENT_COMPRESS
/// (not implemented yet), CLIENT_QUERY_ATTRIBUTES / optional metadata (MySQL 8 extensions not
/// handled), and MariaDB's extended capabilities (bulk execute, metadata caching), so clients fall
/// back to the classic protocol.
pub const PROXY_CAPABILITIES: C = C::CLIENT_LONG_PASSWORD
    .union(C::CLIENT_FOUND_ROWS)
    .union(C::CLIENT_LONG_FLAG)
    .union(C::CLIENT_CONNECT_WITH_DB)
    .union(C::CLIENT_NO_SCHEMA)
    .union(C::CLIENT_ODBC)
    .union(C::CLIENT_LOCAL_FILES)
    .union(C::CLIENT_IGNORE_SPACE)
    .union(C::CLIENT_PROTOCOL_41)
    .union(C::CLIENT_INTERACTIVE)
    .union(C::CLIENT_IGNORE_SIGPIPE)
    .union(C::CLIENT_TRANSACTIONS)
    .union(C::CLIENT_RESERVED)
    .union(C::CLIENT_SECURE_CONNECTION)
    .union(C::CLIENT_MULTI_STATEMENTS)
    .union(C::CLIENT_MULTI_RESULTS)
    .union(C::CLIENT_PS_MULTI_RESULTS)
    .union(C::CLIENT_PLUGIN_AUTH)
    .union(C::CLIENT_CONNECT_ATTRS)
    .union(C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(C::CLIENT_SESSION_TRACK)
    .union(C::CLIENT_DEPRECATE_EOF);

/// Client capabilities that change the bytes or meaning of responses. A backend connection is
/// opened with exactly the client's choice of these, so responses pass through unchanged; pools
/// are keyed by them (see `pool::PoolKey`). Multi-statements is not here: the session switches it
/// per connection with COM_SET_OPTION, as clients themselves can.
pub const RESPONSE_SHAPING: C = C::CLIENT_FOUND_ROWS
    .union(C::CLIENT_LONG_FLAG)
    .union(C::CLIENT_NO_SCHEMA)
    .union(C::CLIENT_ODBC)
    .union(C::CLIENT_LOCAL_FILES)
    .union(C::CLIENT_IGNORE_SPACE)
    .union(C::CLIENT_INTERACTIVE)
    .union(C::CLIENT_MULTI_RESULTS)
    .union(C::CLIENT_PS_MULTI_RESULTS)
    .union(C::CLIENT_SESSION_TRACK)
    .union(C::CLIENT_DEPRECATE_EOF);

/// What the proxy's greeting says about "the server": mirrored from the primary when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub version: String,
    pub capabilities: C,
    pub collation: u8,
}

/// The version the greeting gives until a backend has been reached.
pub const UNREACHED_VERSION: &str = "5.5.5-10.11.0-MariaDB-rwsplit";

impl Default for ServerIdentity {
    /// Used until a backend has been reached.
    fn default() -> Self {
        ServerIdentity {
            version: UNREACHED_VERSION.into(),
            capabilities: PROXY_CAPABILITIES,
            collation: 45, // utf8mb4_general_ci
        }
    }
}

/// The initial handshake payload sent to a client, offering `caps` (within the primary's and
/// `PROXY_CAPABILITIES`, and CLIENT_SSL when TLS is configured).
pub fn greeting(
    id: &ServerIdentity,
    caps: C,
    connection_id: u32,
    nonce: &[u8; 20],
    plugin: &str,
    status: u16,
) -> Vec<u8> {
    let mut part1 = [0u8; 8];
    part1.copy_from_slice(&nonce[..8]);
    let mut part2 = nonce[8..].to_vec();
    part2.push(0);
    let pkt = HandshakePacket::new(
        10,
        id.version.as_bytes(),
        connection_id,
        part1,
        Some(part2),
        caps,
        id.collation,
        StatusFlags::from_bits_truncate(status),
        Some(plugin.as_bytes()),
    );
    let mut buf = Vec::with_capacity(128);
    pkt.serialize(&mut buf);
    buf
}

/// What a client said in its login packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub capabilities: C,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<Vec<u8>>,
}

/// Whether a client's first packet is an SSLRequest: the first 32 bytes of a login, alone, with
/// CLIENT_SSL set.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])
            & C::CLIENT_SSL.bits()
            != 0
}

/// Parses a HandshakeResponse41. `offered` are the capabilities the greeting announced; the
/// result's capabilities are what the client asked for within those.
pub fn parse_login(payload: &[u8], offered: C) -> Result<Login, HandshakeError> {
    // An SSLRequest is the first 32 bytes of a login with CLIENT_SSL set; after the upgrade,
    // the login over TLS keeps the flag.
    if payload.len() >= 4 {
        let flags = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if flags & C::CLIENT_SSL.bits() != 0 && !offered.contains(C::CLIENT_SSL) {
            return Err(HandshakeError::TlsRequested);
        }
        if flags & C::CLIENT_PROTOCOL_41.bits() == 0 {
            return Err(HandshakeError::OldProtocol);
        }
        // Clients on libmariadb or libmysqlclient, Go's, Connector/J leave the flag out when
        // the server does not offer it; PHP's mysqlnd sets it and compresses regardless, and
        // its next command would be misread (waited on until net_timeout).
        if flags & C::CLIENT_COMPRESS.bits() != 0 && !offered.contains(C::CLIENT_COMPRESS) {
            return Err(HandshakeError::CompressionRequested);
        }
    }
    let resp: HandshakeResponse<'_> = ParseBuf(payload)
        .parse(())
        .map_err(HandshakeError::MalformedLogin)?;
    let db = resp
        .db_name()
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    Ok(Login {
        capabilities: resp.capabilities() & offered,
        collation: resp.collation(),
        user: String::from_utf8_lossy(resp.user()).into_owned(),
        auth_response: resp.scramble_buf().to_vec(),
        database: db,
        plugin: resp.auth_plugin().map(|p| p.as_bytes().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::AuthPlugin;

    fn login_bytes(caps: C, db: Option<&str>) -> Vec<u8> {
        let r = HandshakeResponse::new(
            Some(&b"12345678901234567890"[..]),
            (10, 11, 0),
            Some(&b"app"[..]),
            db.map(|d| d.as_bytes()),
            Some(AuthPlugin::MysqlNativePassword),
            caps,
            None,
            1 << 24,
        );
        let mut b = Vec::new();
        r.serialize(&mut b);
        b
    }

    #[test]
    fn greeting_parses_back_with_the_mirrored_version_and_nonce() {
        let id = ServerIdentity::default();
        let nonce = *b"abcdefghijklmnopqrst";
        // The status flags given: a server whose global sql_mode has NO_BACKSLASH_ESCAPES.
        let status =
            StatusFlags::SERVER_STATUS_AUTOCOMMIT | StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES;
        let caps = id.capabilities & PROXY_CAPABILITIES;
        let g = greeting(
            &id,
            caps,
            42,
            &nonce,
            "mysql_native_password",
            status.bits(),
        );
        let p: HandshakePacket<'_> = ParseBuf(&g).parse(()).unwrap();
        assert_eq!(p.status_flags(), status);
        assert_eq!(p.server_version_ref(), id.version.as_bytes());
        assert_eq!(p.connection_id(), 42);
        assert_eq!(&p.nonce()[..20], &nonce[..]);
        assert!(!p.capabilities().contains(C::CLIENT_SSL));
        assert_eq!(
            p.auth_plugin_name_ref(),
            Some(&b"mysql_native_password"[..])
        );
    }

    #[test]
    fn login_keeps_only_offered_capabilities() {
        let caps = PROXY_CAPABILITIES | C::CLIENT_OPTIONAL_RESULTSET_METADATA;
        let l = parse_login(&login_bytes(caps, Some("app")), PROXY_CAPABILITIES).unwrap();
        assert!(
            !l.capabilities
                .contains(C::CLIENT_OPTIONAL_RESULTSET_METADATA)
        );
        assert_eq!(l.user, "app");
        assert_eq!(l.database.as_deref(), Some("app"));
        assert_eq!(l.auth_response, b"12345678901234567890");
        assert_eq!(l.plugin.as_deref(), Some(&b"mysql_native_password"[..]));
    }

    #[test]
    fn a_tls_request_is_refused_clearly() {
        let b = login_bytes(PROXY_CAPABILITIES | C::CLIENT_SSL, None);
        assert!(matches!(
            parse_login(&b[..32], PROXY_CAPABILITIES),
            Err(HandshakeError::TlsRequested)
        ));
    }

    #[test]
    fn garbage_login_is_an_error_not_a_panic() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8 | 0x02).collect();
            let _ = parse_login(&junk, PROXY_CAPABILITIES);
        }
    }
}
