//! Turning rwsplit's own failures into MySQL error packets: the one place that picks codes,
//! SQLSTATEs and wording, so clients and DBAs see what the servers would say.

use crate::pool::PoolError;
use crate::route::RouteError;

/// An error rwsplit reports to a client as an ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: u16,
    pub sql_state: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn new(code: u16, sql_state: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            code,
            sql_state,
            message: message.into(),
        }
    }

    /// ER_ACCESS_DENIED_ERROR, worded as the server words it.
    pub fn access_denied(user: &str, host: &str, with_password: bool) -> Self {
        let yes = if with_password { "YES" } else { "NO" };
        Self::new(
            1045,
            "28000",
            format!("Access denied for user '{user}'@'{host}' (using password: {yes})"),
        )
    }

    /// ER_UNKNOWN_COM_ERROR.
    pub fn unknown_command() -> Self {
        Self::new(1047, "08S01", "Unknown command")
    }

    /// ER_HANDSHAKE_ERROR.
    pub fn bad_handshake() -> Self {
        Self::new(1043, "08S01", "Bad handshake")
    }

    /// ER_NET_PACKETS_OUT_OF_ORDER.
    pub fn packets_out_of_order() -> Self {
        Self::new(1156, "08S01", "Got packets out of order")
    }

    /// ER_NET_PACKET_TOO_LARGE.
    pub fn packet_too_large() -> Self {
        Self::new(
            1153,
            "08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        )
    }

    /// ER_CON_COUNT_ERROR.
    pub fn too_many_connections(detail: &str) -> Self {
        Self::new(1040, "08004", format!("Too many connections ({detail})"))
    }

    /// ER_UNKNOWN_STMT_HANDLER.
    pub fn unknown_statement(id: u32, during: &str) -> Self {
        Self::new(
            1243,
            "HY000",
            format!("Unknown prepared statement handler ({id}) given to {during}"),
        )
    }

    /// ER_NOT_SUPPORTED_YET, for features rwsplit does not carry through.
    pub fn not_supported(what: &str) -> Self {
        Self::new(
            1235,
            "42000",
            format!("rwsplit does not support {what} yet"),
        )
    }

    /// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: a change in a READ ONLY transaction.
    pub fn read_only_transaction() -> Self {
        Self::new(
            1792,
            "25006",
            "Cannot execute statement in a READ ONLY transaction",
        )
    }

    /// A backend failed under a statement; ER_UNKNOWN_ERROR with rwsplit's explanation.
    pub fn backend_failed(detail: impl std::fmt::Display) -> Self {
        Self::new(1105, "HY000", format!("rwsplit: {detail}"))
    }

    pub fn payload(&self) -> Vec<u8> {
        crate::protocol::packets::err_payload(self.code, self.sql_state, &self.message)
    }
}

impl From<&PoolError> for ClientError {
    fn from(e: &PoolError) -> Self {
        match e {
            PoolError::Exhausted { .. } => ClientError::too_many_connections(&e.to_string()),
            PoolError::Backend { .. } | PoolError::UnknownBackend(_) => {
                ClientError::backend_failed(e)
            }
        }
    }
}

impl From<RouteError> for ClientError {
    fn from(e: RouteError) -> Self {
        // ER_OPTION_PREVENTS_STATEMENT reads right to applications that already handle a
        // read-only server; the message says why.
        match e {
            RouteError::NoPrimary => ClientError::new(
                1290,
                "HY000",
                "rwsplit: no primary backend is available, so this statement cannot run (the primary is down or unreachable)",
            ),
            RouteError::SplitBrain => ClientError::new(
                1290,
                "HY000",
                "rwsplit: more than one backend is writable (split brain), so writes are refused until exactly one is; reads still work",
            ),
            RouteError::PrimaryReadOnly => ClientError::new(
                1290,
                "HY000",
                "rwsplit: the primary is read-only (read_only = ON; a failover may be under way), so changes are refused until a backend is writable",
            ),
            RouteError::NoReplica => ClientError::backend_failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::parse_err;

    #[test]
    fn access_denied_reads_like_the_server() {
        let e = ClientError::access_denied("app", "127.0.0.1", true);
        let p = e.payload();
        let parsed = parse_err(&p).unwrap();
        assert_eq!(parsed.code, 1045);
        assert_eq!(&parsed.sql_state, b"28000");
        assert_eq!(
            parsed.message,
            b"Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
    }
}
