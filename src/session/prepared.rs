//! Binary-protocol prepared statements across the session's backend connections.
//!
//! The client sees one statement id per COM_STMT_PREPARE, chosen by rwsplit. Behind it, the
//! statement is prepared on whichever connection runs it (a read on a replica, the same statement
//! inside a transaction on the primary), lazily, each with that server's own id.

use std::collections::HashMap;

use crate::classify::Classification;

/// The session's two connection slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Primary,
    Replica,
}

/// The statement as prepared on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    pub backend_id: u32,
    /// Whether that connection has been sent the parameter types (the first execute there must
    /// carry them, whatever the client's own first execute did).
    pub types_sent: bool,
}

#[derive(Debug, Clone)]
pub struct Statement {
    /// The COM_STMT_PREPARE packet, to prepare again on another connection.
    pub prepare_packet: Vec<u8>,
    pub class: Classification,
    /// The statement's digest, for query insight.
    pub digest: std::sync::Arc<str>,
    pub num_params: u16,
    /// The parameter types from the client's last execute that carried them.
    pub types: Option<Vec<u8>>,
    pub on: HashMap<Slot, Prepared>,
    /// Where it last ran (cursors, COM_STMT_RESET and long data live there).
    pub last: Option<Slot>,
}

/// The session's statements by client-facing id.
#[derive(Debug, Default)]
pub struct Registry {
    pub statements: HashMap<u32, Statement>,
    next_id: u32,
}

impl Registry {
    pub fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Statement> {
        self.statements.get_mut(&id)
    }

    /// A slot's connection was replaced: its statements are gone with it.
    pub fn forget_slot(&mut self, slot: Slot) {
        for s in self.statements.values_mut() {
            s.on.remove(&slot);
            if s.last == Some(slot) {
                s.last = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.statements.clear();
    }
}

/// The statement id of a COM_STMT_* packet (bytes 1..5).
pub fn statement_id(packet: &[u8]) -> Option<u32> {
    let b = packet.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes `id` over the statement id of a COM_STMT_* packet.
pub fn set_statement_id(packet: &mut [u8], id: u32) {
    if let Some(b) = packet.get_mut(1..5) {
        b.copy_from_slice(&id.to_le_bytes());
    }
}

/// Whether a COM_STMT_EXECUTE asks for a cursor (flags byte, CURSOR_TYPE_* bits).
pub fn wants_cursor(packet: &[u8]) -> bool {
    packet.get(5).is_some_and(|f| f & 0x07 != 0)
}

/// Prepares a COM_STMT_EXECUTE for one connection: sets the backend's statement id, remembers
/// parameter types the client sent, and inserts the remembered types when this connection has
/// not seen them yet (layout: id u32, flags u8, iterations u32, null bitmap, new-params-bound
/// flag, then 2 bytes of type per parameter when the flag is 1, then values).
pub fn rewrite_execute(packet: &[u8], stmt: &mut Statement, slot: Slot) -> Option<Vec<u8>> {
    let on = stmt.on.get_mut(&slot)?;
    let n = stmt.num_params as usize;
    let mut out;
    if n == 0 {
        out = packet.to_vec();
    } else {
        let flag_at = 10 + n.div_ceil(8);
        let flag = *packet.get(flag_at)?;
        if flag == 1 {
            let types = packet.get(flag_at + 1..flag_at + 1 + 2 * n)?;
            stmt.types = Some(types.to_vec());
            on.types_sent = true;
            out = packet.to_vec();
        } else if on.types_sent || stmt.types.is_none() {
            out = packet.to_vec();
        } else {
            let types = stmt.types.as_deref()?;
            out = Vec::with_capacity(packet.len() + types.len());
            out.extend_from_slice(&packet[..flag_at]);
            out.push(1);
            out.extend_from_slice(types);
            out.extend_from_slice(packet.get(flag_at + 1..)?);
            on.types_sent = true;
        }
    }
    set_statement_id(&mut out, on.backend_id);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn stmt(num_params: u16) -> Statement {
        Statement {
            prepare_packet: b"\x16SELECT ?".to_vec(),
            class: classify(b"SELECT ?"),
            digest: "SELECT ?".into(),
            num_params,
            types: None,
            on: HashMap::new(),
            last: None,
        }
    }

    /// COM_STMT_EXECUTE for statement 7 with one LONGLONG parameter = 5.
    fn execute_with_types() -> Vec<u8> {
        let mut p = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0];
        p.push(0); // null bitmap
        p.push(1); // new params bound
        p.extend_from_slice(&[8, 0]); // MYSQL_TYPE_LONGLONG
        p.extend_from_slice(&5u64.to_le_bytes());
        p
    }

    fn execute_without_types() -> Vec<u8> {
        let mut p = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        p.extend_from_slice(&6u64.to_le_bytes());
        p
    }

    #[test]
    fn the_statement_id_is_replaced_by_the_backends() {
        let mut s = stmt(1);
        s.on.insert(
            Slot::Replica,
            Prepared {
                backend_id: 99,
                types_sent: false,
            },
        );
        let out = rewrite_execute(&execute_with_types(), &mut s, Slot::Replica).unwrap();
        assert_eq!(statement_id(&out), Some(99));
        assert_eq!(&out[5..], &execute_with_types()[5..]);
        assert_eq!(s.types.as_deref(), Some(&[8u8, 0][..]));
    }

    #[test]
    fn a_connection_that_never_saw_the_types_gets_them() {
        let mut s = stmt(1);
        s.on.insert(
            Slot::Replica,
            Prepared {
                backend_id: 1,
                types_sent: false,
            },
        );
        rewrite_execute(&execute_with_types(), &mut s, Slot::Replica).unwrap();
        // The client's next execute omits the types; the primary has never seen them.
        s.on.insert(
            Slot::Primary,
            Prepared {
                backend_id: 3,
                types_sent: false,
            },
        );
        let out = rewrite_execute(&execute_without_types(), &mut s, Slot::Primary).unwrap();
        assert_eq!(statement_id(&out), Some(3));
        assert_eq!(out[11], 1, "new-params-bound flag set");
        assert_eq!(&out[12..14], &[8, 0]);
        assert_eq!(&out[14..], &6u64.to_le_bytes());
        // The replica already has them: passed through as the client sent it.
        let out = rewrite_execute(&execute_without_types(), &mut s, Slot::Replica).unwrap();
        assert_eq!(out.len(), execute_without_types().len());
    }

    #[test]
    fn a_truncated_execute_is_refused_not_a_panic() {
        let mut s = stmt(3);
        s.on.insert(
            Slot::Primary,
            Prepared {
                backend_id: 1,
                types_sent: false,
            },
        );
        for n in 0..12 {
            let _ = rewrite_execute(&execute_with_types()[..n], &mut s, Slot::Primary);
        }
        assert!(rewrite_execute(&[0x17, 1], &mut s, Slot::Primary).is_none());
    }

    #[test]
    fn cursor_flag_is_read_from_the_flags_byte() {
        let mut p = execute_without_types();
        assert!(!wants_cursor(&p));
        p[5] = 1;
        assert!(wants_cursor(&p));
    }
}
