//! What a session has changed on the server side, so every backend connection it uses carries
//! the same state before running its next statement.

use crate::pool::{BackendConn, BackendError, ServerErr};
use crate::protocol::packets::SERVER_STATUS_AUTOCOMMIT;
use crate::protocol::response::ResponseKind;

#[derive(Debug, Clone)]
pub struct State {
    pub schema: Option<String>,
    pub multi_statements: bool,
    /// Session commands (`SET ...`, as COM_QUERY packets) in the order they succeeded; each
    /// connection replays the ones it has not run (`BackendConn::applied`).
    pub replay: Vec<Vec<u8>>,
    pub autocommit: bool,
    /// `CREATE TEMPORARY TABLE` ran: the table exists only on the primary connection.
    pub temporary_tables: bool,
    /// `LOCK TABLES` is in force on the primary connection.
    pub table_locks: bool,
}

impl State {
    pub fn new(schema: Option<String>, multi_statements: bool) -> State {
        State {
            schema,
            multi_statements,
            replay: Vec::new(),
            autocommit: true,
            temporary_tables: false,
            table_locks: false,
        }
    }

    /// The state after COM_RESET_CONNECTION: the schema stays, everything else is the default.
    pub fn reset(&mut self) {
        *self = State::new(self.schema.take(), self.multi_statements);
    }

    pub fn update_status(&mut self, status: u16) {
        self.autocommit = status & SERVER_STATUS_AUTOCOMMIT != 0;
    }
}

/// Brings `conn` to the session's state with the fewest commands: nothing when it already
/// matches (the common case), else the schema, the session commands it missed, and the
/// multi-statement option. A server error (e.g. the schema was dropped) is returned as is.
pub async fn sync(
    conn: &mut BackendConn,
    st: &State,
) -> Result<Result<(), ServerErr>, BackendError> {
    if let Some(db) = &st.schema {
        if conn.schema.as_deref() != Some(db.as_str()) {
            if let Err(e) = conn.init_db(db).await? {
                return Ok(Err(e));
            }
        }
    }
    while let Some(stmt) = st.replay.get(conn.applied) {
        if let Err(e) = conn.run_internal(stmt, ResponseKind::Query).await? {
            return Ok(Err(e));
        }
        conn.applied += 1;
    }
    if conn.multi_statements != st.multi_statements {
        if let Err(e) = conn.set_multi_statements(st.multi_statements).await? {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}
