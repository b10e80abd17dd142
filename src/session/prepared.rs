//! Binary-protocol prepared statements across the session's backend connections.
//!
//! The client sees one statement id per COM_STMT_PREPARE, chosen by rwsplit. Behind it, the
//! statement is prepared on whichever connection runs it (a read on a replica, the same statement
//! inside a transaction on the primary, another pooled connection after multiplexing), lazily,
//! each with that server's own id. Connections keep what was prepared on them
//! (`BackendConn::statements`), so sessions running the same statement share it.

use std::collections::HashMap;

use crate::classify::Classification;

/// The session's two connection slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    // Explicit: `Registry` indexes its epochs by them.
    Primary = 0,
    Replica = 1,
}

impl Slot {
    /// The session's other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Primary => Slot::Replica,
            Slot::Replica => Slot::Primary,
        }
    }
}

/// Statements one session may have prepared at once (the server's own default
/// `max_prepared_stmt_count`).
pub const MAX_PER_SESSION: usize = 16_382;

#[derive(Debug, Clone)]
pub struct Statement {
    /// The COM_STMT_PREPARE packet, to prepare again on another connection.
    pub prepare_packet: Vec<u8>,
    /// Its key among the statements a connection keeps (`BackendConn::statements`).
    pub key: crate::pool::conn::StatementKey,
    /// The session's schema when the client prepared it. The server finds a statement's tables
    /// in the schema of its prepare, even after a `USE`: on another connection, or after a
    /// `USE`, it is prepared again in this schema (see `exec::prepared_on`).
    pub schema: Option<Box<str>>,
    pub class: Classification,
    /// The statement's digest, for query insight.
    pub digest: super::digests::Digest,
    pub num_params: u16,
    /// The parameter types from the client's last execute that carried them.
    pub types: Option<Vec<u8>>,
    /// Where it last ran (cursors, COM_STMT_RESET and long data live there), with that slot's
    /// epoch then: read it through [`Registry::last`], which drops it once the slot's
    /// connection was released.
    pub last: Option<(Slot, u64)>,
    /// The server's id for it on the connection it last ran on, with that connection's
    /// `statements_version()` and `context()` then (see `exec::prepared_on`).
    pub on: Option<((u64, u32), u64, u32)>,
}

/// The session's statements by client-facing id. Each statement also counts in a total over
/// all sessions (`proxy.max_prepared_statements`).
#[derive(Debug, Default)]
pub struct Registry {
    /// By the id rwsplit gave the client. foldhash, not std's SipHash: the ids are rwsplit's own
    /// (nothing a client chooses), and an execute looks its statement up three times.
    pub statements: HashMap<u32, Statement, foldhash::fast::RandomState>,
    next_id: u32,
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Per slot, bumped whenever its connection is released or replaced (or the slot is
    /// cleared). A statement's `last` holds only while its epoch is the slot's current one, so
    /// releasing a slot (after every multiplexed statement) costs the same however many
    /// statements the session has prepared.
    epochs: [u64; 2],
}

impl Registry {
    pub fn new(total: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Registry {
        Registry {
            statements: HashMap::default(),
            next_id: 0,
            total,
            epochs: [0; 2],
        }
    }

    /// Statements registered over all sessions.
    pub fn total(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn insert(&mut self, id: u32, s: Statement) {
        if self.statements.insert(id, s).is_none() {
            self.total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn remove(&mut self, id: u32) -> Option<Statement> {
        let s = self.statements.remove(&id);
        if s.is_some() {
            self.total
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        s
    }

    pub fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Statement> {
        self.statements.get_mut(&id)
    }

    /// A slot's connection was released or replaced: statements no longer live there.
    pub fn forget_slot(&mut self, slot: Slot) {
        self.epochs[slot as usize] += 1;
    }

    /// Where statement `id` last ran, if that slot still holds the same connection.
    pub fn last(&self, id: u32) -> Option<Slot> {
        self.placed(self.statements.get(&id)?)
    }

    /// Where `s` (one of these statements) last ran, if that slot still holds the same
    /// connection.
    pub fn placed(&self, s: &Statement) -> Option<Slot> {
        let (slot, epoch) = s.last?;
        (self.epochs[slot as usize] == epoch).then_some(slot)
    }

    /// Records where statement `id` ran (`None`: nowhere that lasts). False if there is no such
    /// statement.
    pub fn set_last(&mut self, id: u32, slot: Option<Slot>) -> bool {
        let epochs = self.epochs;
        let Some(s) = self.statements.get_mut(&id) else {
            return false;
        };
        s.last = slot.map(|slot| (slot, epochs[slot as usize]));
        true
    }

    pub fn clear(&mut self) {
        self.total
            .fetch_sub(self.statements.len(), std::sync::atomic::Ordering::Relaxed);
        self.statements.clear();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.clear();
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

/// Remembers the parameter types a COM_STMT_EXECUTE carries, before it is routed: client
/// libraries send them once, with the first execute, whether or not it ran (rwsplit may refuse
/// it: a pool full, a READ ONLY transaction), and the next execute leaves them out.
pub fn note_types(packet: &[u8], stmt: &mut Statement) {
    let n = stmt.num_params as usize;
    if n == 0 {
        return;
    }
    let flag_at = 10 + n.div_ceil(8);
    if packet.get(flag_at) == Some(&1)
        && let Some(types) = packet.get(flag_at + 1..flag_at + 1 + 2 * n)
        && stmt.types.as_deref() != Some(types)
    {
        stmt.types = Some(types.to_vec());
    }
}

/// Prepares a COM_STMT_EXECUTE for one connection into `out` (cleared first; the session reuses
/// it, so an execute costs no allocation): sets the backend's statement id, remembers parameter
/// types the client sent, and inserts the remembered types when the client left them out (the
/// server statement may be shared, and another session may have bound other types since).
/// Layout: id u32, flags u8, iterations u32, null bitmap, new-params-bound flag, then 2 bytes of
/// type per parameter when the flag is 1, then values. `None`: the packet is too short.
pub fn rewrite_execute(
    packet: &[u8],
    stmt: &mut Statement,
    backend_id: u32,
    out: &mut Vec<u8>,
) -> Option<()> {
    out.clear();
    let n = stmt.num_params as usize;
    if n == 0 {
        out.extend_from_slice(packet);
    } else {
        let flag_at = 10 + n.div_ceil(8);
        let flag = *packet.get(flag_at)?;
        if flag == 1 {
            packet.get(flag_at + 1..flag_at + 1 + 2 * n)?;
            note_types(packet, stmt);
            out.extend_from_slice(packet);
        } else if stmt.types.is_none() {
            out.extend_from_slice(packet);
        } else {
            let types = stmt.types.as_deref()?;
            let rest = packet.get(flag_at + 1..)?;
            out.reserve(packet.len() + types.len());
            out.extend_from_slice(&packet[..flag_at]);
            out.push(1);
            out.extend_from_slice(types);
            out.extend_from_slice(rest);
        }
    }
    if out.len() < 5 {
        return None;
    }
    set_statement_id(out, backend_id);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn stmt(num_params: u16) -> Statement {
        Statement {
            prepare_packet: b"\x16SELECT ?".to_vec(),
            key: crate::pool::conn::statement_key(b"\x16SELECT ?"),
            schema: None,
            class: classify(b"SELECT ?"),
            digest: super::super::digests::Digest::new("SELECT ?".into()),
            num_params,
            types: None,
            last: None,
            on: None,
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
        let mut out = Vec::new();
        rewrite_execute(&execute_with_types(), &mut s, 99, &mut out).unwrap();
        assert_eq!(statement_id(&out), Some(99));
        assert_eq!(&out[5..], &execute_with_types()[5..]);
        assert_eq!(s.types.as_deref(), Some(&[8u8, 0][..]));
    }

    #[test]
    fn types_the_client_left_out_are_always_sent() {
        let mut s = stmt(1);
        let mut out = Vec::new();
        rewrite_execute(&execute_with_types(), &mut s, 1, &mut out).unwrap();
        // The client's next execute omits the types; the server statement (maybe shared with
        // another session, or on another connection) gets them anyway.
        for backend_id in [3, 1] {
            rewrite_execute(&execute_without_types(), &mut s, backend_id, &mut out).unwrap();
            assert_eq!(statement_id(&out), Some(backend_id));
            assert_eq!(out[11], 1, "new-params-bound flag set");
            assert_eq!(&out[12..14], &[8, 0]);
            assert_eq!(&out[14..], &6u64.to_le_bytes());
        }
    }

    #[test]
    fn a_truncated_execute_is_refused_not_a_panic() {
        let mut s = stmt(3);
        let mut out = Vec::new();
        for n in 0..12 {
            let _ = rewrite_execute(&execute_with_types()[..n], &mut s, 1, &mut out);
        }
        assert!(rewrite_execute(&[0x17, 1], &mut s, 1, &mut out).is_none());
        let mut none = stmt(0);
        assert!(rewrite_execute(&[0x17, 1], &mut none, 1, &mut out).is_none());
    }

    #[test]
    fn a_reused_buffer_holds_only_the_latest_execute() {
        let mut long = stmt(1);
        let mut out = Vec::new();
        let mut big = execute_with_types();
        big.extend_from_slice(&[0xAB; 300]);
        rewrite_execute(&big, &mut long, 7, &mut out).unwrap();
        let mut short = stmt(0);
        let p = [0x17, 4, 0, 0, 0, 0, 1, 0, 0, 0];
        rewrite_execute(&p, &mut short, 9, &mut out).unwrap();
        assert_eq!(out, [0x17, 9, 0, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn where_a_statement_ran_holds_until_that_slot_is_released() {
        let mut r = Registry::new(Default::default());
        r.insert(1, stmt(0));
        r.insert(2, stmt(0));
        assert_eq!(r.last(1), None);
        assert!(r.set_last(1, Some(Slot::Replica)));
        assert!(r.set_last(2, Some(Slot::Primary)));
        assert!(!r.set_last(3, Some(Slot::Primary)), "no statement 3");
        assert_eq!(r.last(1), Some(Slot::Replica));
        // Releasing the replica slot forgets statement 1's place, not statement 2's.
        r.forget_slot(Slot::Replica);
        assert_eq!(r.last(1), None);
        assert_eq!(r.last(2), Some(Slot::Primary));
        // Run again on the slot's next connection: known there until that is released too.
        assert!(r.set_last(1, Some(Slot::Replica)));
        assert_eq!(r.last(1), Some(Slot::Replica));
        r.forget_slot(Slot::Primary);
        assert_eq!(r.last(1), Some(Slot::Replica));
        assert_eq!(r.last(2), None);
        assert!(r.set_last(1, None));
        assert_eq!(r.last(1), None);
    }

    #[test]
    fn cursor_flag_is_read_from_the_flags_byte() {
        let mut p = execute_without_types();
        assert!(!wants_cursor(&p));
        p[5] = 1;
        assert!(wants_cursor(&p));
    }
}
