//! Commands other than COM_QUERY: prepared statements, options, reset and change user.

use super::exec::{Cmd, slot_of};
use super::login;
use super::prepared::{self, Slot, Statement};
use super::{Session, SessionError, State};
use crate::error::ClientError;
use crate::protocol::auth::Plugin;
use crate::protocol::packets;
use crate::protocol::response::ResponseKind as K;
use crate::route::Target;

/// Wrong passwords at COM_CHANGE_USER that one connection may send before it is closed.
const MAX_FAILED_CHANGE_USER: u8 = 3;

impl Session {
    pub(super) async fn stmt_prepare(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        // The server's own limit per connection, and rwsplit's over all sessions (each
        // statement keeps its SQL in memory).
        let total = self.shared.config().proxy.max_prepared_statements;
        let limit = if self.stmts.statements.len() >= prepared::MAX_PER_SESSION {
            Some(prepared::MAX_PER_SESSION)
        } else if self.stmts.total() >= total {
            metrics::counter!(crate::metrics::ERRORS, "kind" => "max_prepared_statements")
                .increment(1);
            Some(total)
        } else {
            None
        };
        if let Some(n) = limit {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {n})"
            );
            return self.reply(&ClientError::new(1461, "42000", &msg)).await;
        }
        let dialect = self.dialect();
        let (class, digest) = self.digests.classify(&packet[1..], dialect);
        self.digest = Some(digest.clone());
        if class.kind == crate::classify::StatementKind::Kill {
            return self
                .reply(&ClientError::not_supported(super::KILL_FORMS))
                .await;
        }
        let proxy_id = self.stmts.next_id();
        let cmd = Cmd::Prepare { packet, proxy_id };
        let forced = self.diagnostics_target(&class);
        let Some((slot, o)) = self.execute(&class, cmd, K::StmtPrepare, forced).await? else {
            return Ok(());
        };
        self.after_prepare(&class, slot, &o);
        if let Some(p) = o.prepared {
            let key = crate::pool::conn::statement_key(packet);
            let mut on = None;
            let keep = self.server_statements_with_state(slot);
            if let Some(c) = slot_of(&mut self.primary, &mut self.replica, slot) {
                let context = c.context();
                if super::exec::remember_prepared(c, &key, context, p.statement_id, &keep).await {
                    self.leftovers[slot as usize] = true;
                }
                on = Some((c.statements_version(), context, p.statement_id));
            }
            self.stmts.insert(
                proxy_id,
                Statement {
                    prepare_packet: packet.to_vec(),
                    key,
                    schema: self.state.schema.as_deref().map(Box::from),
                    class,
                    digest,
                    num_params: p.num_params,
                    types: None,
                    last: None,
                    on,
                },
            );
        }
        Ok(())
    }

    /// The target of the slot a statement last ran on, if that connection is still there.
    pub(super) fn slot_target(&self, slot: Slot) -> Option<Target> {
        match slot {
            Slot::Primary => self.primary.as_ref().map(|c| Target::Primary(c.backend())),
            Slot::Replica => self.replica.as_ref().map(|c| Target::Replica(c.backend())),
        }
    }

    pub(super) async fn stmt_execute(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let id = prepared::statement_id(packet).unwrap_or(0);
        let Some(stmt) = self.stmts.statements.get_mut(&id) else {
            return self
                .reply(&ClientError::unknown_statement(id, "mysqld_stmt_execute"))
                .await;
        };
        prepared::note_types(packet, stmt);
        let class = stmt.class.clone();
        self.digest = Some(stmt.digest.clone());
        // Long data already sent lives on one connection: execute there. Gone with it, the
        // execute is refused: the client left the value out of it, and a server would read
        // the parameters after it from the wrong place.
        let forced = self.long_data_on(id).and_then(|s| self.slot_target(s));
        // Long data on a replica, and a transaction begun on the primary since: the statement
        // must run in it, where its long data is not.
        let stranded = matches!(forced, Some(Target::Replica(_)))
            && (self.in_transaction() && self.replica_transaction().is_none()
                || !self.state.autocommit);
        let forced = forced.filter(|_| !stranded);
        if stranded
            || forced.is_none() && self.long_data.contains(&id)
            || self.lost_long_data.contains(&id)
        {
            // Long data sent since, to the connection the session holds now, goes too.
            if let Some(slot) = self.long_data_on(id) {
                self.drop_long_data(id, slot).await;
            }
            self.long_data.retain(|&x| x != id);
            self.lost_long_data.retain(|&x| x != id);
            let e = ClientError::new(
                1210,
                "HY000",
                "Incorrect arguments to mysqld_stmt_execute: the long data sent for this \
                 statement was lost with its backend connection, or is on a server the \
                 statement cannot run on now (a transaction began elsewhere); send it again",
            );
            return self.reply(&e).await;
        }
        let cursor = prepared::wants_cursor(packet);
        let kind = K::StmtExecute { cursor };
        let at = forced.or_else(|| self.diagnostics_target(&class));
        let res = self
            .execute(&class, Cmd::Execute { packet, id }, kind, at)
            .await?;
        self.stmts.set_last(id, res.as_ref().map(|(slot, _)| *slot));
        // The server drops long data once it ran the statement, whatever the outcome. One
        // rwsplit refused never reached it: its long data is dropped there too, or a client's
        // retry would send it again after the first.
        if res.is_none()
            && let Some(slot) = forced.map(super::exec::slot_for)
        {
            self.drop_long_data(id, slot).await;
        }
        // Also long data lost with a connection that failed under this execute: the client
        // sends it again with its retry.
        self.long_data.retain(|&x| x != id);
        self.lost_long_data.retain(|&x| x != id);
        if let Some((slot, o)) = &res {
            let open = o.status & packets::SERVER_STATUS_CURSOR_EXISTS != 0;
            // A statement's new execute closes its old cursor on the server; one on the other
            // slot's connection would stay there, on a server statement other sessions share.
            if let Some(old) = self.cursor_slot(id)
                && old != *slot
            {
                self.leftovers[old as usize] = true;
            }
            self.close_cursor(id);
            if cursor && open {
                self.cursors.push((id, *slot));
            }
        }
        if let Some((slot, o)) = res {
            self.after_statement(&class, slot, &o, packet).await;
        }
        Ok(())
    }

    /// Drops the long data statement `id` has on `slot`'s server statement (COM_STMT_RESET),
    /// or, where that cannot be done, has the connection reset before it goes back to its pool.
    async fn drop_long_data(&mut self, id: u32, slot: Slot) {
        let on = self.stmts.statements.get(&id).and_then(|s| s.on);
        if let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot)
            && let Some((version, _, backend_id)) = on
            && version == conn.statements_version()
        {
            let reset = crate::protocol::Command::StmtReset.packet(&backend_id.to_le_bytes());
            if let Ok(Ok(_)) = conn.run_internal(&reset, K::Single).await {
                return;
            }
        }
        if slot_of(&mut self.primary, &mut self.replica, slot).is_some() {
            self.leftovers[slot as usize] = true;
        }
    }

    /// The slot whose connection holds long data already sent for statement `id`, if any.
    fn long_data_on(&self, id: u32) -> Option<Slot> {
        if self.long_data.contains(&id) {
            self.stmts.last(id)
        } else {
            None
        }
    }

    /// COM_STMT_SEND_LONG_DATA has no response, so failures cannot be reported now; the
    /// execute that follows reports them.
    pub(super) async fn stmt_send_long_data(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let id = prepared::statement_id(packet).unwrap_or(0);
        if !self.stmts.statements.contains_key(&id) {
            return Ok(());
        }
        if !self.send_long_data(id, packet).await {
            // Not delivered: the parameter is incomplete, so its execute is refused (1210)
            // rather than run without the value.
            self.long_data.retain(|&x| x != id);
            if !self.lost_long_data.contains(&id) {
                self.lost_long_data.push(id);
            }
        }
        Ok(())
    }

    /// Sends a chunk of long data for statement `id` where its earlier chunks went (else where
    /// its execute will go). Returns whether it was sent.
    async fn send_long_data(&mut self, id: u32, packet: &[u8]) -> bool {
        if self.lost_long_data.contains(&id) {
            return false;
        }
        let Some(class) = self.stmts.statements.get(&id).map(|s| s.class.clone()) else {
            return false;
        };
        let target = match self.long_data_on(id).and_then(|s| self.slot_target(s)) {
            Some(t) => t,
            None => match self.target_for(&class, None) {
                Ok(t) => t,
                Err(_) => return false,
            },
        };
        // Make sure the statement is prepared on that connection by running an empty sync.
        if !self.execute_sync_only_quiet(target).await {
            return false;
        }
        let slot = if target.is_primary() {
            Slot::Primary
        } else {
            Slot::Replica
        };
        let Ok(backend_id) = self.prepared_on(id, slot).await else {
            return false;
        };
        if !self.stmts.set_last(id, Some(slot)) {
            return false;
        }
        let mut bytes = packet.to_vec();
        prepared::set_statement_id(&mut bytes, backend_id);
        let sent = match slot_of(&mut self.primary, &mut self.replica, slot) {
            Some(c) => c.send_command(&bytes).await.is_ok(),
            None => false,
        };
        if !sent {
            self.drop_slot(slot);
            return false;
        }
        if !self.long_data.contains(&id) {
            self.long_data.push(id);
        }
        true
    }

    /// COM_STMT_CLOSE (no response). The server statements stay prepared on their
    /// connections for the next session that runs the same statement (bounded per connection).
    /// Long data or an open cursor the statement leaves on its server statement (which other
    /// sessions running the same statement there share) makes that connection go back to its
    /// pool reset.
    pub(super) async fn stmt_close(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let id = prepared::statement_id(packet).unwrap_or(0);
        let long_data = self.long_data_on(id);
        let cursor = self.cursor_slot(id);
        if self.stmts.remove(id).is_none() {
            return Ok(());
        }
        for slot in [long_data, cursor].into_iter().flatten() {
            self.leftovers[slot as usize] = true;
        }
        self.long_data.retain(|&x| x != id);
        self.lost_long_data.retain(|&x| x != id);
        self.close_cursor(id);
        Ok(())
    }

    pub(super) async fn stmt_reset(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let id = prepared::statement_id(packet).unwrap_or(0);
        let Some(stmt) = self.stmts.statements.get(&id) else {
            return self
                .reply(&ClientError::unknown_statement(id, "mysqld_stmt_reset"))
                .await;
        };
        let last = self.stmts.placed(stmt);
        // Both looked at: a statement may have long data and an open cursor.
        let had_cursor = self.close_cursor(id);
        let holds_state = self.long_data.contains(&id) || had_cursor;
        self.long_data.retain(|&x| x != id);
        self.lost_long_data.retain(|&x| x != id);
        // Only long data or a cursor live on the server statement; with neither, there is
        // nothing to reset there.
        let on = last.filter(|s| holds_state && self.slot_target(*s).is_some());
        match on {
            Some(slot) => {
                let backend_id = match self.prepared_on(id, slot).await {
                    Ok(b) => b,
                    Err(_) if self.lost.is_some() => return self.reply_lost().await,
                    Err(_) => {
                        let status = self.status();
                        self.client.send_ok(self.seq, status).await?;
                        return Ok(());
                    }
                };
                let mut bytes = packet.to_vec();
                prepared::set_statement_id(&mut bytes, backend_id);
                self.forward_on(slot, &bytes, K::Single).await?;
                Ok(())
            }
            _ => {
                let status = self.status();
                self.client.send_ok(self.seq, status).await?;
                Ok(())
            }
        }
    }

    pub(super) async fn stmt_fetch(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let id = prepared::statement_id(packet).unwrap_or(0);
        let on = match self.cursor_slot(id) {
            Some(slot) => self.prepared_on(id, slot).await.ok().map(|b| (slot, b)),
            None => None,
        };
        if on.is_none() && self.lost.is_some() {
            return self.reply_lost().await;
        }
        let Some((slot, backend_id)) = on else {
            if !self.stmts.statements.contains_key(&id) {
                return self
                    .reply(&ClientError::unknown_statement(id, "mysqld_stmt_fetch"))
                    .await;
            }
            // In each server's own words (MySQL ends the sentence, MariaDB does not).
            let stop = match self.flavor {
                Some(crate::classify::Flavor::MySql) => ".",
                _ => "",
            };
            let e = ClientError::new(
                1421,
                "HY000",
                format!("The statement ({id}) has no open cursor{stop}"),
            );
            return self.reply(&e).await;
        };
        let mut bytes = packet.to_vec();
        prepared::set_statement_id(&mut bytes, backend_id);
        if let Some(o) = self.forward_on(slot, &bytes, K::StmtFetch).await? {
            // An error carries no status: the cursor may still be open on the server.
            let done = o.status & packets::SERVER_STATUS_LAST_ROW_SENT != 0;
            if o.error.is_none() && (done || o.status & packets::SERVER_STATUS_CURSOR_EXISTS == 0) {
                self.close_cursor(id);
            }
        }
        Ok(())
    }

    /// COM_SET_OPTION: recorded for the session and applied to each connection before its next
    /// statement. The server answers with an EOF (an OK with the 0xFE header under
    /// CLIENT_DEPRECATE_EOF), and so does rwsplit.
    pub(super) async fn set_option(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let on = match packet.get(1..3) {
            Some([0, 0]) => true,
            Some([1, 0]) => false,
            _ => return self.reply(&ClientError::unknown_command()).await,
        };
        self.state.multi_statements = on;
        let status = self.status();
        let payload = if self
            .caps
            .contains(mysql_common::constants::CapabilityFlags::CLIENT_DEPRECATE_EOF)
        {
            let mut p = packets::ok_payload(0, 0, status, 0);
            p[0] = 0xFE;
            p
        } else {
            packets::eof_payload(0, status)
        };
        self.reply_raw(&payload).await
    }

    /// COM_RESET_CONNECTION: every held connection is reset, the session's state is cleared
    /// as the server clears it (the schema stays).
    pub(super) async fn reset_connection(&mut self) -> Result<(), SessionError> {
        self.reset_session().await;
        let status = self.status();
        self.client.send_ok(self.seq, status).await?;
        Ok(())
    }

    /// What COM_RESET_CONNECTION clears, and a failed COM_CHANGE_USER too.
    async fn reset_session(&mut self) {
        for slot in [Slot::Primary, Slot::Replica] {
            if let Some(c) = slot_of(&mut self.primary, &mut self.replica, slot)
                && !matches!(c.reset().await, Ok(true))
            {
                self.discard_slot(slot);
            }
        }
        self.state.reset(self.shared.health.session_status());
        self.stmts.clear();
        self.long_data.clear();
        self.forget_pins();
        self.take_user_settings();
    }

    /// COM_CHANGE_USER: re-authenticates against the configured users, then starts the session
    /// over as the new user with fresh connections. A wrong password gets 1045 and leaves the
    /// session as the old user with its state cleared (the schema stays), as on MariaDB; the
    /// `MAX_FAILED_CHANGE_USER`th on one connection also ends it. Each is logged and counted as
    /// a refused login.
    pub(super) async fn change_user(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        let Some(req) = login::parse_change_user(packet, self.caps) else {
            self.reply(&ClientError::bad_handshake()).await?;
            return Err(SessionError::ChangeUser("a malformed packet"));
        };
        let password = self
            .shared
            .config()
            .user(&req.user)
            .map(|u| u.password.clone());
        let plugin = req.plugin.unwrap_or(Plugin::Native);
        let ok = password
            .as_deref()
            .is_some_and(|pw| plugin.verify(&self.nonce, pw, &req.auth_response));
        // As at login: no "fast auth success" for an empty password.
        let empty = password.as_deref().is_some_and(str::is_empty);
        if !ok {
            let e =
                ClientError::access_denied(&req.user, &self.host, !req.auth_response.is_empty());
            tracing::info!(parent: &self.span, user = %req.user.escape_debug(), "change user refused");
            metrics::counter!(crate::metrics::CLIENTS_REFUSED, "reason" => "auth").increment(1);
            self.failed_change_user = self.failed_change_user.saturating_add(1);
            if self.failed_change_user >= MAX_FAILED_CHANGE_USER {
                // Password guessing on one connection, where a failure costs nothing else:
                // the connection ends, as a failed login's does.
                self.reply(&e).await?;
                return Err(SessionError::ChangeUser(
                    "the third wrong password on this connection",
                ));
            }
            self.reset_session().await;
            return self.reply(&e).await;
        }
        // A character set no server takes for a client's text is refused as the server refuses
        // it, before anything changes: the session goes on as it was.
        // Backend connections log in with the session's collation, in a login packet's one
        // byte: a larger id (MariaDB's UCA 14 collations, some of MySQL's) is refused rather
        // than cut to its low byte, which named another character set (608, a utf8mb4
        // collation, became cp932, whose multi-byte characters can end in a backslash).
        let collation = match req.collation.map(|id| (id, u8::try_from(id))) {
            None => None,
            Some((_, Ok(c))) => Some(c),
            Some((id, Err(_))) => {
                let e = ClientError::new(
                    1273,
                    "HY000",
                    format!(
                        "Unknown collation: '{id}' (rwsplit takes collation ids up to 255 at \
                         COM_CHANGE_USER)"
                    ),
                );
                return self.reply(&e).await;
            }
        };
        if let Some(charset) = collation.and_then(login::refused_client_charset) {
            return self.reply(&login::refused_charset_error(charset)).await;
        }
        // The old user's state goes with its connections (reset on return).
        self.multiplex = false;
        self.release_slot(Slot::Primary).await;
        self.release_slot(Slot::Replica).await;
        self.stmts.clear();
        self.long_data.clear();
        self.forget_pins();
        self.info.lock().unwrap_or_else(|p| p.into_inner()).user = req.user.clone();
        self.user = req.user;
        self.take_user_settings();
        if let Some(c) = collation {
            self.collation = c;
        }
        self.pools.clear();
        let old_schema = self.state.schema.take();
        self.state = State::new(
            None,
            self.state.multi_statements,
            self.shared.health.session_status(),
        );
        tracing::info!(parent: &self.span, user = %self.user, "client changed user");
        if let Some(db) = req.database
            && !self.use_schema(db).await?
        {
            // As on the server, a schema refused keeps the one the session had.
            let mut i = self.info.lock().unwrap_or_else(|p| p.into_inner());
            i.schema.clone_from(&old_schema);
            drop(i);
            self.state.schema = old_schema;
            return Ok(());
        }
        if plugin == Plugin::CachingSha2 && !empty {
            self.seq = self
                .client
                .send(
                    self.seq,
                    &[0x01, crate::protocol::auth::SHA2_FAST_AUTH_SUCCESS],
                )
                .await?;
        }
        let status = self.status();
        self.client.send_ok(self.seq, status).await?;
        Ok(())
    }

    async fn execute_sync_only_quiet(&mut self, t: Target) -> bool {
        self.checkout_quiet(t).await
    }

    /// `KILL [QUERY] id` or COM_PROCESS_KILL: `id` is the session id rwsplit gave its client
    /// at handshake, or the backend thread a session's statement runs on now (what
    /// `CONNECTION_ID()` returned to it). The session's running statement is killed on the
    /// backend thread running it (that connection is then never reused by another session);
    /// `KILL CONNECTION` also ends the session. Only the session's own user may kill it.
    pub(super) async fn kill_session(
        &mut self,
        id: u32,
        query_only: bool,
    ) -> Result<(), SessionError> {
        let unknown = format!("Unknown thread id: {id}");
        // A thread the session itself read with `CONNECTION_ID()`: to its client that is its
        // own connection, whichever session runs there now. Unless another session that read
        // the same id (on another server: thread ids repeat between servers) runs there now:
        // which one is meant is unknown.
        let own_thread = {
            let i = self.info.lock().unwrap_or_else(|p| p.into_inner());
            i.connection_ids.iter().any(|&(_, t)| t == id)
        };
        let found = self.shared.session_for_kill(id, query_only);
        if own_thread {
            return match found {
                Some((info, true)) if !std::sync::Arc::ptr_eq(&info, &self.info) => {
                    self.reply(&ClientError::new(1094, "HY000", &unknown)).await
                }
                _ => self.kill_self(query_only).await,
            };
        }
        let Some((info, by_thread)) = found else {
            return self.reply(&ClientError::new(1094, "HY000", &unknown)).await;
        };
        let owned = {
            let mut i = info.lock().unwrap_or_else(|p| p.into_inner());
            // Found by its thread: still on it (the statement may have ended since).
            let gone = by_thread && i.backend_thread != Some(id);
            (!gone).then(|| {
                (i.user == self.user).then(|| {
                    let running = i.running_on.zip(i.running_at.clone()).zip(i.backend_thread);
                    if running.is_some() {
                        i.kill_sent = true;
                    }
                    if !query_only {
                        // Flagged and woken before the running statement is interrupted: when it
                        // ends, its session must not run the client's next command, whether that
                        // is already buffered (pipelined) or still on its way (the idle wait polls
                        // the wakeup first).
                        i.killed = true;
                        i.wake.wake();
                    }
                    running
                })
            })
        };
        let Some(owned) = owned else {
            return self.reply(&ClientError::new(1094, "HY000", &unknown)).await;
        };
        let Some(running) = owned else {
            let msg = format!("You are not owner of thread {id}");
            return self.reply(&ClientError::new(1095, "HY000", &msg)).await;
        };
        if std::sync::Arc::ptr_eq(&info, &self.info) {
            return self.kill_self(query_only).await;
        }
        if let Some(((backend, at), thread)) = running {
            tracing::info!(parent: &self.span, session = id, thread, query_only, "KILL from a client");
            super::exec::Killer::new(&self.shared, &self.user, (backend, &at), &self.span)
                .kill_query(thread)
                .await;
        }
        let status = self.status();
        self.client.send_ok(self.seq, status).await?;
        Ok(())
    }

    /// The session kills itself: the KILL is the statement interrupted, as on the server
    /// (MariaDB says 1927 when the connection goes, MySQL 1317 either way).
    pub(super) async fn kill_self(&mut self, query_only: bool) -> Result<(), SessionError> {
        let flavor =
            crate::monitor::replication::Flavor::of(&self.shared.health.identity.load().version);
        let mariadb = flavor == crate::monitor::replication::Flavor::MariaDb;
        let e = if query_only || !mariadb {
            ClientError::new(1317, "70100", "Query execution was interrupted")
        } else {
            ClientError::new(1927, "70100", "Connection was killed")
        };
        self.reply(&e).await?;
        if query_only {
            Ok(())
        } else {
            Err(SessionError::Killed)
        }
    }

    /// The session's user's settings from the config (after a reset or change of user).
    fn take_user_settings(&mut self) {
        let s = super::UserSettings::of(&self.shared.config(), &self.user);
        self.multiplex = s.multiplex;
        self.query_timeout = s.query_timeout;
        self.causal.mode = s.consistency;
    }

    /// Forgets what pinned the session to its connections (after a reset or change of user).
    fn forget_pins(&mut self) {
        self.until_next = None;
        self.cursors.clear();
        self.last_slot = None;
    }

    /// Forgets statement `id`'s cursor, if it has an open one; returns whether it had.
    fn close_cursor(&mut self, id: u32) -> bool {
        let had = self.cursor_slot(id).is_some();
        self.cursors.retain(|&(c, _)| c != id);
        had
    }

    /// Where statement `id`'s open cursor is, if it has one.
    pub(super) fn cursor_slot(&self, id: u32) -> Option<Slot> {
        self.cursors
            .iter()
            .find(|&&(c, _)| c == id)
            .map(|&(_, s)| s)
    }
}
