//! Session-level behaviour through rwsplit: authentication plugins, COM_CHANGE_USER,
//! COM_RESET_CONNECTION, the less common commands, bad input and pool limits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn};
use rwsplit::protocol::response::ResponseKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The session state a reset must clear, seen from both the primary and a replica.
async fn session_state(c: &mut Conn) -> (Option<i64>, String, Option<String>) {
    let var: Option<Option<i64>> = c.query_first("SELECT @v").await.expect("@v");
    let mode: Option<String> = c.query_first("SELECT @@sql_mode").await.expect("sql_mode");
    let temp: Result<Option<String>, _> = c
        .query_first("/* rwsplit:primary */ SELECT name FROM reset_probe")
        .await;
    (var.flatten(), mode.unwrap_or_default(), temp.ok().flatten())
}

async fn dirty_session(c: &mut Conn) {
    c.query_drop("SET @v = 42").await.expect("set @v");
    // rwsplit's own session variable: a reset undoes it as the server undoes its own.
    c.query_drop("SET rwsplit_consistency = 'strong'")
        .await
        .expect("set rwsplit_consistency");
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .expect("sql_mode");
    c.query_drop("CREATE TEMPORARY TABLE reset_probe (name VARCHAR(10))")
        .await
        .expect("temp table");
    c.query_drop("INSERT INTO reset_probe VALUES ('here')")
        .await
        .expect("insert");
    let (v, mode, temp) = session_state(c).await;
    assert_eq!(v, Some(42));
    assert_eq!(mode, "ANSI_QUOTES");
    assert_eq!(temp.as_deref(), Some("here"));
}

/// rwsplit's backend connections negotiate session tracking; a client that did not gets OK
/// packets in its own format, with the info ("Records: ...") where its library looks for it
/// (mysql_async does not ask for session tracking and stalls on a misplaced info).
#[tokio::test]
async fn prepared_statements_are_bounded_over_all_sessions() {
    let proxy = Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nmax_prepared_statements = 3"));
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let a1 = a.prep("SELECT 1").await.expect("a1");
    let _a2 = a.prep("SELECT 2").await.expect("a2");
    let _b1 = b.prep("SELECT 3").await.expect("b1");
    let e = b
        .prep("SELECT 4")
        .await
        .expect_err("the fourth over all sessions");
    assert_eq!(server_code(&e), Some(1461), "{e}");
    // Closing one, or a session ending, makes room.
    a.close(a1).await.expect("close");
    a.ping()
        .await
        .expect("a round trip after the close, which has no answer");
    let _b2 = b.prep("SELECT 5").await.expect("after a close");
    assert_eq!(
        server_code(&b.prep("SELECT 6").await.expect_err("full")),
        Some(1461)
    );
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match b.prep("SELECT 7").await {
            Ok(s) => {
                let v: Option<i64> = b.exec_first(&s, ()).await.expect("exec");
                assert_eq!(v, Some(7));
                break;
            }
            Err(e) => {
                assert_eq!(server_code(&e), Some(1461), "{e}");
                assert!(
                    Instant::now() < deadline,
                    "a closed session's statements still count"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A client that negotiated session tracking gets the OK packet's session-state data as the
/// server sent it (rwsplit reads it for itself and strips it only for clients without it).
#[tokio::test]
async fn a_client_with_session_tracking_gets_the_session_state_changes() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::packets;
    let proxy = Proxy::start();
    let mut raw = raw_client(&proxy, C::CLIENT_SESSION_TRACK | C::CLIENT_DEPRECATE_EOF).await;
    assert!(raw.capabilities.contains(C::CLIENT_SESSION_TRACK));
    let mut ok = Vec::new();
    for (sql, zone) in [
        ("SET SESSION time_zone = '+01:00'", "+01:00"),
        ("SET SESSION time_zone = '+02:00'", "+02:00"),
    ] {
        raw.send_command(&[b"\x03".as_slice(), sql.as_bytes()].concat())
            .await
            .expect("send");
        rwsplit::protocol::frame::read_packet(&mut raw.reader, &mut ok, 1 << 24)
            .await
            .expect("ok packet");
        let status = packets::parse_ok(&ok).expect("an OK packet").status;
        assert!(
            status & packets::SERVER_SESSION_STATE_CHANGED != 0,
            "{sql}: the state-changed flag was removed"
        );
        let changes = packets::session_changes(&ok).expect("session-state data");
        assert!(
            changes
                .sysvars
                .contains(&("time_zone".to_string(), zone.to_string())),
            "{sql}: {:?}",
            changes.sysvars
        );
    }
}

#[tokio::test]
async fn ok_packet_info_reaches_a_client_without_session_tracking_as_from_the_server() {
    let proxy = Proxy::start();
    let t = unique("okinfo");
    let mut c = proxy.conn().await;
    let mut d = direct(3306).await;
    d.query_drop("USE app").await.expect("use");
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"))
        .await
        .expect("create");
    let mut infos = Vec::new();
    for (conn, base) in [(&mut c, 0), (&mut d, 10)] {
        conn.query_drop(format!(
            "INSERT INTO {t} VALUES ({}, 1), ({}, 1)",
            base + 1,
            base + 2
        ))
        .await
        .expect("multi-row insert");
        let insert = (conn.affected_rows(), conn.info().into_owned());
        conn.query_drop(format!("UPDATE {t} SET v = 2 WHERE id > {base}"))
            .await
            .expect("update");
        let update = (conn.affected_rows(), conn.info().into_owned());
        // Several results in one go, each OK with its info.
        conn.query_drop(format!(
            "INSERT INTO {t} VALUES ({}, 3), ({}, 3); UPDATE {t} SET v = 4 WHERE v = 3",
            base + 3,
            base + 4
        ))
        .await
        .expect("multi-statement");
        infos.push((insert, update));
    }
    assert_eq!(infos[0], infos[1], "through rwsplit vs direct");
    assert_eq!(
        infos[0].0,
        (2, "Records: 2  Duplicates: 0  Warnings: 0".to_string())
    );
    assert!(
        infos[0].1.1.starts_with("Rows matched: 2"),
        "{:?}",
        infos[0].1
    );
}

/// Sends `command` (a `LOAD DATA LOCAL`, text or executed) on a raw client and reads the
/// server's request for the file: its sequence id.
async fn file_request(c: &mut rwsplit::pool::BackendConn, command: &[u8]) -> u8 {
    c.send_command(command).await.expect("load");
    let mut buf: Vec<u8> = Vec::new();
    let seq = rwsplit::protocol::frame::read_packet(&mut c.reader, &mut buf, 1 << 20)
        .await
        .expect("file request");
    assert_eq!(buf.as_slice().first(), Some(&0xFB), "{buf:?}");
    seq
}

/// A prepared `LOAD DATA LOCAL` (MariaDB prepares it) asks for the client's file as the text
/// statement does, and loads it, as directly.
#[tokio::test]
async fn a_prepared_load_data_local_loads_the_clients_file() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::{Command, frame};
    let proxy = Proxy::start();
    let mut setup = proxy.conn().await;
    let t = create_table(&mut setup, "infile_prepared", "v INT").await;
    let through = raw_client(&proxy, C::CLIENT_LOCAL_FILES).await;
    let direct = raw_client_at("127.0.0.1:3306", C::CLIENT_LOCAL_FILES).await;
    let mut loaded = Vec::new();
    for mut c in [through, direct] {
        let stmt = raw_prepare(
            &mut c,
            &format!("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE {t}"),
        )
        .await;
        let execute = [&[Command::StmtExecute as u8][..], &stmt, &[0, 1, 0, 0, 0]].concat();
        let seq = file_request(&mut c, &execute).await;
        let mut buf: Vec<u8> = Vec::new();
        let next = frame::write_packet(&mut c.writer, seq.wrapping_add(1), b"1\n2\n3\n")
            .await
            .expect("file");
        frame::write_packet(&mut c.writer, next, b"")
            .await
            .expect("end of file");
        tokio::io::AsyncWriteExt::flush(&mut c.writer)
            .await
            .expect("flush");
        frame::read_packet(&mut c.reader, &mut buf, 1 << 20)
            .await
            .expect("result");
        let ok = rwsplit::protocol::packets::parse_ok(&buf).expect("an OK");
        loaded.push(ok.affected_rows);
    }
    assert_eq!(loaded, [3, 3], "through rwsplit, then directly");
    setup
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// A client that answers LOAD DATA LOCAL's file request with frames out of order gets the
/// server's 1156, and the backend connection the server then stops answering is never given to
/// another session (whose statement would wait on it for ever).
#[tokio::test]
async fn a_file_sent_out_of_order_leaves_no_broken_connection_in_the_pool() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::frame;
    let proxy = Proxy::start_with(|t| pool_settings(t, "max_connections = 1"));
    let mut setup = proxy.conn().await;
    let t = create_table(&mut setup, "infile_order", "v VARCHAR(20)").await;
    setup.disconnect().await.expect("quit");
    let caps = C::CLIENT_LOCAL_FILES;
    let mut bad = raw_client(&proxy, caps).await;
    let load = format!("\x03LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE {t}");
    file_request(&mut bad, load.as_bytes()).await;
    // The file's frames numbered from 0 instead of 2.
    for (seq, data) in [(0u8, &b"a\n"[..]), (1, b"")] {
        frame::write_packet(&mut bad.writer, seq, data)
            .await
            .expect("file frame");
    }
    tokio::io::AsyncWriteExt::flush(&mut bad.writer)
        .await
        .expect("flush");
    let mut reply = Vec::new();
    frame::read_packet(&mut bad.reader, &mut reply, 1 << 20)
        .await
        .expect("reply");
    let err = rwsplit::protocol::packets::parse_err(&reply).expect("an error");
    assert_eq!(err.code, 1156, "{:?}", String::from_utf8_lossy(err.message));
    drop(bad);
    // The next session with the same capabilities, on the primary's one pool slot.
    let mut next = raw_client(&proxy, caps).await;
    let insert = format!("\x03INSERT INTO {t} VALUES ('next')");
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        next.run_internal(insert.as_bytes(), ResponseKind::Query),
    )
    .await
    .expect("the next session's insert waited on the broken connection")
    .expect("insert");
    assert!(done.is_ok(), "{done:?}");
    let drop_table = format!("\x03DROP TABLE {t}");
    next.run_internal(drop_table.as_bytes(), ResponseKind::Query)
        .await
        .expect("drop")
        .expect("drop ok");
}

/// A command whose frame is not numbered 0 gets the server's 1156 (with sequence id 0), and
/// the connection ends, as directly; other sessions go on.
#[tokio::test]
async fn a_command_out_of_sequence_gets_1156_and_ends_the_connection() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::frame;
    let proxy = Proxy::start();
    let mut bystander = proxy.conn().await;
    let through = raw_client(&proxy, C::empty()).await;
    let direct = raw_client_at("127.0.0.1:3306", C::empty()).await;
    for mut c in [through, direct] {
        frame::write_packet(&mut c.writer, 3, b"\x03SELECT 1")
            .await
            .expect("a command");
        tokio::io::AsyncWriteExt::flush(&mut c.writer)
            .await
            .expect("flush");
        let mut buf: Vec<u8> = Vec::new();
        let seq = tokio::time::timeout(
            Duration::from_secs(5),
            frame::read_packet(&mut c.reader, &mut buf, 1 << 20),
        )
        .await
        .expect("an answer at once")
        .expect("an error packet");
        assert_eq!(seq, 0);
        let err = rwsplit::protocol::packets::parse_err(&buf).expect("an error");
        assert_eq!(err.code, 1156, "{:?}", String::from_utf8_lossy(err.message));
        let mut rest = Vec::new();
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut c.reader, &mut rest),
        )
        .await
        .expect("the connection ends");
        // The server may send a second 1156 before it closes; nothing else comes.
        assert!(
            end.is_err() || rest.is_empty() || rest.get(4) == Some(&0xFF),
            "{rest:?}"
        );
    }
    let n: Option<u32> = bystander.query_first("SELECT 1").await.expect("bystander");
    assert_eq!(n, Some(1));
}

/// A client that sends a command where LOAD DATA LOCAL wants its file gets 1156 at once, with
/// the sequence id the file would have had, as from the server (which then closes the
/// connection). rwsplit used to pass the command on as the file and wait for the rest of it.
#[tokio::test]
async fn a_command_sent_instead_of_the_file_gets_1156_at_once() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::frame;
    let proxy = Proxy::start();
    let mut setup = proxy.conn().await;
    let t = create_table(&mut setup, "infile_command", "v INT").await;
    let through = raw_client(&proxy, C::CLIENT_LOCAL_FILES).await;
    let direct = raw_client_at("127.0.0.1:3306", C::CLIENT_LOCAL_FILES).await;
    for mut c in [through, direct] {
        let load = format!("\x03LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE {t}");
        let seq = file_request(&mut c, load.as_bytes()).await;
        let mut buf: Vec<u8> = Vec::new();
        frame::write_packet(&mut c.writer, 0, b"\x03SELECT 1")
            .await
            .expect("a command");
        tokio::io::AsyncWriteExt::flush(&mut c.writer)
            .await
            .expect("flush");
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            frame::read_packet(&mut c.reader, &mut buf, 1 << 20),
        )
        .await
        .expect("an answer at once")
        .expect("an error packet");
        assert_eq!(got, seq.wrapping_add(1));
        let err = rwsplit::protocol::packets::parse_err(&buf).expect("an error");
        assert_eq!(err.code, 1156, "{:?}", String::from_utf8_lossy(err.message));
    }
    let n: i64 = setup
        .query_first(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM {t}"))
        .await
        .expect("count")
        .expect("a row");
    assert_eq!(n, 0);
    setup
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// A client without session tracking never sees its flag: not in OK packets (rewritten whole)
/// nor in the status of a result's EOF packets, which the server sets when the statement
/// changed session state (`SET STATEMENT ... FOR SELECT`) and rwsplit's connection tracks it.
#[tokio::test]
async fn a_client_without_session_tracking_never_gets_its_status_flag() {
    const CHANGED: u16 = rwsplit::protocol::packets::SERVER_SESSION_STATE_CHANGED;
    let proxy = Proxy::start();
    for caps in EOF_STYLES {
        let mut through = raw_client(&proxy, caps).await;
        let mut direct = raw_client_at("127.0.0.1:3306", caps).await;
        let mut statuses = Vec::new();
        for conn in [&mut through, &mut direct] {
            let mut seen = Vec::new();
            for sql in [
                "SET STATEMENT div_precision_increment = 1 FOR SELECT 1/3",
                "SET STATEMENT sql_mode = '' FOR SELECT 1 UNION SELECT 2",
                "SELECT 1",
            ] {
                let o = conn
                    .run_internal(&[&[3u8][..], sql.as_bytes()].concat(), ResponseKind::Query)
                    .await
                    .expect(sql)
                    .expect(sql);
                assert_eq!(o.status & CHANGED, 0, "{sql} ({caps:?})");
                seen.push(o.status);
            }
            statuses.push(seen);
        }
        assert_eq!(
            statuses[0], statuses[1],
            "through rwsplit vs direct ({caps:?})"
        );
    }
}

#[tokio::test]
async fn caching_sha2_password_clients_log_in_through_the_fast_path() {
    let proxy = Proxy::start_with(|t| {
        t.replace(
            "[proxy]\n",
            "[proxy]\nauth_plugin = \"caching_sha2_password\"\n",
        )
    });
    let mut c = proxy.conn().await;
    let n: Option<u32> = c.query_first("SELECT 6 * 7").await.expect("query");
    assert_eq!(n, Some(42));
    drop(c);

    let err = Conn::new(proxy.opts().pass(Some("nope")))
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(server_code(&err), Some(1045), "{err}");

    // rwsplit's own client speaks it too (as it does to MySQL 8 backends).
    let mut raw = raw_client(&proxy, mysql_common::constants::CapabilityFlags::empty()).await;
    assert!(raw.ping().await.expect("ping"));
}

#[tokio::test]
async fn the_mariadb_command_line_client_works_with_both_auth_plugins() {
    for plugin in ["mysql_native_password", "caching_sha2_password"] {
        let proxy = Proxy::start_with(|t| {
            t.replace(
                "[proxy]\n",
                &format!("[proxy]\nauth_plugin = \"{plugin}\"\n"),
            )
        });
        // A replica checked and eligible: the read below is a replica's.
        proxy.replica_ready().await;
        let out = std::process::Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                &format!("-P{}", proxy.addr.port()),
                "-uapp",
                "-papp",
                "app",
                "-N",
                "-B",
                "-e",
                // A replica's server id is over 1 (`@@read_only` is asked of the primary).
                "SELECT 'hello', @@server_id > 1; SHOW TABLES LIKE 'no_such%'; SELECT 1 + 1",
            ])
            .output()
            .expect("run the mariadb client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{plugin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, "hello\t1\n2\n", "{plugin}");
    }
}

#[tokio::test]
async fn change_user_resets_the_session_everywhere() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    dirty_session(&mut c).await;
    c.change_user(
        ChangeUserOpts::default()
            .with_user(Some("app".into()))
            .with_pass(Some("app".into()))
            .with_db_name(Some("app".into())),
    )
    .await
    .expect("change user");
    let (v, mode, temp) = session_state(&mut c).await;
    assert_eq!(v, None, "user variable survived COM_CHANGE_USER");
    assert_ne!(mode, "ANSI_QUOTES", "sql_mode survived COM_CHANGE_USER");
    assert_eq!(temp, None, "temporary table survived COM_CHANGE_USER");
    // Reads go back to replicas once the temporary table is gone.
    let id: Option<u64> = c.query_first("SELECT @@server_id").await.expect("id");
    assert_ne!(id, Some(1), "reads stayed on the primary after the reset");

    let err = c
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some("app".into()))
                .with_pass(Some("wrong".into())),
        )
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(server_code(&err), Some(1045), "{err}");
}

/// A schema name no server takes (1102: a trailing space, over 64 characters) is refused once,
/// at login and at COM_CHANGE_USER, and the session's next statement gets its own answer.
#[tokio::test]
async fn a_schema_name_no_server_takes_is_refused_once() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    for db in ["app ", &"x".repeat(65)] {
        let err = c
            .change_user(
                ChangeUserOpts::default()
                    .with_user(Some("app".into()))
                    .with_pass(Some("app".into()))
                    .with_db_name(Some(db.into())),
            )
            .await
            .expect_err("an invalid schema name");
        assert_eq!(server_code(&err), Some(1102), "{err}");
        let schema: Option<String> = c.query_first("SELECT DATABASE()").await.expect("schema");
        assert_eq!(schema.as_deref(), Some("app"), "the session's schema stays");
        for word in ["first", "second"] {
            let got: Option<String> = c.query_first(format!("SELECT '{word}'")).await.expect(word);
            assert_eq!(
                got.as_deref(),
                Some(word),
                "after COM_CHANGE_USER to {db:?}"
            );
        }
    }
    let err = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(proxy.opts()).db_name(Some("app ")),
    )
    .await
    .expect_err("an invalid schema name at login");
    assert_eq!(server_code(&err), Some(1102), "{err}");
}

/// COM_CHANGE_USER to `app` with a wrong scramble (native password, schema `app`, utf8mb4).
fn wrong_change_user() -> Vec<u8> {
    [
        &[0x11][..],
        b"app\0",
        &[20],
        &[0x5A; 20],
        b"app\0",
        &[45, 0],
        b"mysql_native_password\0",
    ]
    .concat()
}

/// Writes one packet on a raw connection and flushes.
async fn send_packet(s: &mut tokio::net::TcpStream, seq: u8, payload: &[u8]) {
    rwsplit::protocol::frame::write_packet(s, seq, payload)
        .await
        .expect("send");
    tokio::io::AsyncWriteExt::flush(s).await.expect("flush");
}

/// Sends `sql` (COM_QUERY) on a raw connection and reads the first `packets` packets of the
/// answer, each within 10 s, concatenated.
async fn raw_query(s: &mut tokio::net::TcpStream, sql: &str, packets: usize) -> Vec<u8> {
    use rwsplit::protocol::frame;
    let command = [&[0x03][..], sql.as_bytes()].concat();
    frame::write_packet(s, 0, &command).await.expect(sql);
    tokio::io::AsyncWriteExt::flush(s).await.expect("flush");
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..packets {
        let read = frame::read_packet(s, &mut buf, 1 << 16);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap_or_else(|_| panic!("no answer to {sql}"))
            .expect(sql);
        out.extend_from_slice(&buf);
    }
    out
}

/// Logs in to `addr` over a raw socket as app (mysql_native_password) in `collation`, into
/// schema `db` if given. Returns the stream, the scramble (a COM_CHANGE_USER proves the
/// password against the login's nonce again) and the server's reply.
async fn native_login(
    addr: std::net::SocketAddr,
    db: Option<&[u8]>,
    collation: u8,
) -> (tokio::net::TcpStream, [u8; 20], Vec<u8>) {
    native_login_asking(
        addr,
        db,
        collation,
        mysql_common::constants::CapabilityFlags::empty(),
    )
    .await
}

/// `native_login` with capabilities `extra` set in the login whatever the greeting offered.
async fn native_login_asking(
    addr: std::net::SocketAddr,
    db: Option<&[u8]>,
    collation: u8,
    extra: mysql_common::constants::CapabilityFlags,
) -> (tokio::net::TcpStream, [u8; 20], Vec<u8>) {
    use mysql_common::constants::CapabilityFlags as C;
    use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
    use mysql_common::proto::MySerialize;
    use rwsplit::protocol::frame;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    let seq = frame::read_packet(&mut s, &mut buf, 1 << 16)
        .await
        .expect("greeting");
    let greeting = mysql_common::io::ParseBuf(&buf)
        .parse::<HandshakePacket<'_>>(())
        .expect("parse greeting");
    let mut nonce = greeting.nonce();
    nonce.truncate(20);
    let scramble = mysql_common::scramble::scramble_native(&nonce, b"app").expect("scramble");
    let mut caps = C::CLIENT_PROTOCOL_41
        | C::CLIENT_SECURE_CONNECTION
        | C::CLIENT_PLUGIN_AUTH
        | C::CLIENT_LONG_PASSWORD
        | C::CLIENT_TRANSACTIONS;
    if db.is_some() {
        caps |= C::CLIENT_CONNECT_WITH_DB;
    }
    let resp = HandshakeResponse::new(
        Some(&scramble[..]),
        (10, 11, 0),
        Some(&b"app"[..]),
        db,
        Some(AuthPlugin::Other(
            b"mysql_native_password".as_slice().into(),
        )),
        caps,
        None,
        1 << 24,
    );
    let mut out = Vec::new();
    resp.serialize(&mut out);
    // Capabilities (4 bytes), max packet size (4), then the collation.
    let flags = u32::from_le_bytes([out[0], out[1], out[2], out[3]]) | extra.bits();
    out[..4].copy_from_slice(&flags.to_le_bytes());
    out[8] = collation;
    frame::write_packet(&mut s, seq.wrapping_add(1), &out)
        .await
        .expect("send login");
    frame::read_packet(&mut s, &mut buf, 1 << 16)
        .await
        .expect("login reply");
    (s, scramble, buf)
}

/// A login that sets CLIENT_COMPRESS though rwsplit does not offer it (PHP's mysqlnd, which
/// then compresses anyway) is refused with a message that says so, instead of its compressed
/// commands being misread.
#[tokio::test]
async fn a_login_asking_for_compression_not_offered_is_refused_with_a_clear_error() {
    let proxy = Proxy::start();
    let compress = mysql_common::constants::CapabilityFlags::CLIENT_COMPRESS;
    let reply = native_login_asking(proxy.addr, None, 45, compress).await.2;
    let err = rwsplit::protocol::packets::parse_err(&reply).expect("an error");
    let message = String::from_utf8_lossy(err.message);
    assert_eq!(err.code, 1235, "{message}");
    assert!(message.contains("compressed protocol"), "{message}");
}

/// A login asking for a character set no server takes for a client's text is refused with
/// the server's 1231, as directly (every backend login for it would fail).
#[tokio::test]
async fn a_login_in_a_charset_clients_cannot_use_is_refused_as_by_the_server() {
    let login_in = async |addr, collation| native_login(addr, None, collation).await.2;
    let proxy = Proxy::start();
    let direct: std::net::SocketAddr = "127.0.0.1:3306".parse().expect("addr");
    for addr in [proxy.addr, direct] {
        let reply = login_in(addr, 35).await;
        let err = rwsplit::protocol::packets::parse_err(&reply).expect("an error");
        assert_eq!(
            (err.code, String::from_utf8_lossy(err.message).into_owned()),
            (
                1231,
                "Variable 'character_set_client' can't be set to the value of 'ucs2'".into()
            ),
            "{addr}"
        );
        let reply = login_in(addr, 45).await;
        assert_eq!(
            reply.as_slice().first(),
            Some(&0x00),
            "utf8mb4 at {addr}: {reply:?}"
        );
    }
}

/// COM_CHANGE_USER to a character set no server takes for a client's text (ucs2, utf16,
/// utf32) is refused with the server's 1231, and the session goes on, as directly.
#[tokio::test]
async fn change_user_to_a_charset_clients_cannot_use_is_refused_and_the_session_goes_on() {
    use rwsplit::protocol::frame;
    async fn attempt(addr: std::net::SocketAddr, charset: [u8; 2]) -> (u16, Vec<u8>) {
        let (mut s, scramble, mut buf) = native_login(addr, Some(b"app"), 45).await;
        assert_eq!(buf.as_slice().first(), Some(&0x00), "login: {buf:?}");
        // COM_CHANGE_USER: user, scramble, schema, charset, plugin.
        let change = [
            &[0x11][..],
            b"app\0",
            &[20],
            &scramble,
            b"app\0",
            &charset,
            b"mysql_native_password\0",
        ]
        .concat();
        frame::write_packet(&mut s, 0, &change)
            .await
            .expect("send change user");
        tokio::io::AsyncWriteExt::flush(&mut s)
            .await
            .expect("flush");
        frame::read_packet(&mut s, &mut buf, 1 << 16)
            .await
            .expect("change user reply");
        let code = rwsplit::protocol::packets::parse_err(&buf).map_or(0, |e| e.code);
        let rows = raw_query(&mut s, "SELECT 'still here', @@collation_connection", 5).await;
        (code, rows)
    }
    let proxy = Proxy::start();
    // ucs2_general_ci (35).
    let (through, rows) = attempt(proxy.addr, [35, 0]).await;
    let (direct, direct_rows) = attempt("127.0.0.1:3306".parse().expect("addr"), [35, 0]).await;
    assert_eq!((through, direct), (1231, 1231));
    assert!(
        rows.windows(10).any(|w| w == b"still here"),
        "the session's next query: {rows:?}"
    );
    assert!(direct_rows.windows(10).any(|w| w == b"still here"));
    // A collation id past one byte (608, one of MariaDB's utf8mb4 collations) is refused, not
    // cut to its low byte (96, cp932's).
    let (through, rows) = attempt(proxy.addr, [0x60, 0x02]).await;
    assert_eq!(through, 1273);
    assert!(rows.windows(10).any(|w| w == b"still here"), "{rows:?}");
    assert!(!rows.windows(5).any(|w| w == b"cp932"), "{rows:?}");
}

/// COM_CHANGE_USER with a wrong password gets 1045 and the session goes on as the old user,
/// its state cleared and its schema kept, as on MariaDB; rwsplit used to close the connection.
#[tokio::test]
async fn a_change_user_with_a_wrong_password_is_refused_and_the_session_goes_on() {
    use rwsplit::protocol::frame;
    async fn attempt(addr: std::net::SocketAddr) -> (u16, Vec<u8>) {
        let (mut s, _, mut buf) = native_login(addr, Some(b"app"), 45).await;
        assert_eq!(buf.as_slice().first(), Some(&0x00), "login: {buf:?}");
        raw_query(&mut s, "SET @v = 42", 1).await;
        let change = wrong_change_user();
        send_packet(&mut s, 0, &change).await;
        let seq = frame::read_packet(&mut s, &mut buf, 1 << 16)
            .await
            .expect("change user reply");
        if buf.as_slice().first() == Some(&0xFE) {
            // The server asks again with a new nonce: still the wrong password.
            send_packet(&mut s, seq.wrapping_add(1), &[0x5A; 20]).await;
            frame::read_packet(&mut s, &mut buf, 1 << 16)
                .await
                .expect("change user reply");
        }
        let code = rwsplit::protocol::packets::parse_err(&buf).map_or(0, |e| e.code);
        let who = "SELECT CONCAT(CURRENT_USER(), '/', IFNULL(@v, 'null'), '/', DATABASE())";
        (code, raw_query(&mut s, who, 5).await)
    }
    let proxy = Proxy::start();
    for addr in ["127.0.0.1:3306".parse().expect("addr"), proxy.addr] {
        let (code, rows) = attempt(addr).await;
        assert_eq!(code, 1045, "{addr}");
        assert!(
            rows.windows(14).any(|w| w == b"app@%/null/app"),
            "{addr}: {:?}",
            String::from_utf8_lossy(&rows)
        );
    }
}

/// Password guessing by COM_CHANGE_USER on one connection: the third wrong password ends it,
/// as a failed login ends its connection, and each is counted as a refused login.
#[tokio::test]
async fn the_third_wrong_change_user_password_ends_the_connection() {
    use rwsplit::protocol::frame;
    let proxy = Proxy::start();
    let (mut s, _, mut buf) = native_login(proxy.addr, Some(b"app"), 45).await;
    let change = wrong_change_user();
    for attempt in 1..=3 {
        send_packet(&mut s, 0, &change).await;
        frame::read_packet(&mut s, &mut buf, 1 << 16)
            .await
            .expect("change user reply");
        let code = rwsplit::protocol::packets::parse_err(&buf).map(|e| e.code);
        assert_eq!(code, Some(1045), "attempt {attempt}");
        if attempt < 3 {
            let one = raw_query(&mut s, "SELECT 'on'", 5).await;
            assert!(one.windows(2).any(|w| w == b"on"), "attempt {attempt}");
        }
    }
    let mut rest = Vec::new();
    let end = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
    )
    .await
    .expect("the connection ends");
    assert!(end.is_err() || rest.is_empty(), "{rest:?}");
    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    let refused = metric_sum(
        &metrics,
        "rwsplit_client_connections_refused_total",
        &["reason=\"auth\""],
    );
    assert_eq!(refused, 3.0, "{metrics}");
}

#[tokio::test]
async fn reset_connection_clears_the_session_everywhere() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    dirty_session(&mut c).await;
    c.reset().await.expect("COM_RESET_CONNECTION");
    let (v, mode, temp) = session_state(&mut c).await;
    assert_eq!(v, None, "user variable survived the reset");
    assert_ne!(mode, "ANSI_QUOTES", "sql_mode survived the reset");
    assert_eq!(temp, None, "temporary table survived the reset");
    // Reads go back to replicas: no temporary table, and the user's consistency mode again
    // (once the replicas are within their lag bound: other tests load them).
    common::eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        "reads stayed on the primary after the reset",
        async || match c.query_first::<u64, _>("SELECT @@server_id").await {
            Ok(Some(1)) => Err("read on the primary".to_string()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
}

#[tokio::test]
async fn less_common_commands_and_malformed_ones_get_proper_answers() {
    use rwsplit::protocol::Command;
    let proxy = Proxy::start();
    let t = unique("fl");
    let mut setup = proxy.conn().await;
    setup
        .query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20))"
        ))
        .await
        .expect("create");
    wait_sync();

    for caps in common::EOF_STYLES {
        let mut raw = raw_client(&proxy, caps).await;
        // COM_FIELD_LIST: two column definitions and a terminator.
        let mut fl = vec![Command::FieldList as u8];
        fl.extend_from_slice(t.as_bytes());
        fl.push(0);
        let o = raw
            .run_internal(&fl, ResponseKind::FieldList)
            .await
            .expect("field list")
            .expect("field list ok");
        assert_eq!(o.error, None);
        // COM_STATISTICS: one line of text.
        let o = raw
            .run_internal(&[Command::Statistics as u8], ResponseKind::Statistics)
            .await
            .expect("statistics");
        assert!(o.is_ok());
        assert!(raw.ping().await.expect("ping"));
        assert!(raw.init_db("app").await.expect("init db").is_ok());
        let bad_db = raw.init_db("no_such_db_xyz").await.expect("init db");
        assert!(matches!(bad_db, Err(ref e) if e.code() == 1044 || e.code() == 1049));

        // Malformed or unknown commands: an error each, and the session goes on.
        let cases: [(&[u8], &str); 6] = [
            (&[0x55], "unknown command byte"),
            (&[], "empty packet"),
            (
                &[Command::StmtExecute as u8, 1, 0],
                "truncated COM_STMT_EXECUTE",
            ),
            (
                &[
                    Command::StmtExecute as u8,
                    0x78,
                    0x56,
                    0x34,
                    0x12,
                    0,
                    1,
                    0,
                    0,
                    0,
                ],
                "COM_STMT_EXECUTE of an unknown statement",
            ),
            (
                &[Command::StmtFetch as u8, 9, 9, 9, 9, 1, 0, 0, 0],
                "fetch of an unknown statement",
            ),
            (
                &[Command::InitDb as u8, 0xFF, 0xFE],
                "COM_INIT_DB with invalid UTF-8",
            ),
        ];
        for (packet, what) in cases {
            let r = raw
                .run_internal(packet, ResponseKind::Single)
                .await
                .unwrap_or_else(|e| panic!("{what}: the session died: {e}"));
            assert!(r.is_err(), "{what}: expected an ERR packet");
        }
        let o = raw
            .run_internal(b"\x03SELECT 1", ResponseKind::Query)
            .await
            .expect("query after bad input")
            .expect("query ok");
        assert_eq!(o.result_sets, 1);
    }
    setup
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

#[tokio::test]
async fn garbage_at_the_handshake_ends_only_that_connection() {
    let proxy = Proxy::start_with(|t| {
        t.replace("handshake_timeout = \"5s\"", "handshake_timeout = \"1s\"")
    });
    let mut bystander = proxy.conn().await;
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xFF, 0xFF, 0xFF, 0x01, 0, 0, 0], // a 16 MiB login packet that never comes
        vec![0x05, 0, 0, 1, 0x8d, 0xa6, 0xff, 0x09, 0], // a login packet cut short
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        vec![], // says nothing at all
    ];
    for garbage in cases {
        let started = Instant::now();
        let mut s = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).await.expect("greeting header");
        let len = u32::from_le_bytes([greeting[0], greeting[1], greeting[2], 0]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.expect("greeting");
        let _ = s.write_all(&garbage).await;
        // rwsplit answers with an error or hangs up, within the handshake timeout.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "rwsplit kept a garbage connection open for 5 s"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        if rest.len() > 4 {
            assert_eq!(rest[4], 0xFF, "anything sent back must be an ERR packet");
        }
        let n: Option<u32> = bystander.query_first("SELECT 1").await.expect("bystander");
        assert_eq!(n, Some(1));
    }
    let mut fresh = proxy.conn().await;
    fresh.ping().await.expect("new sessions still work");
}

/// A login packet over 64 KiB (70 KB of connection attributes) gets the server's answer, 1043
/// "Bad handshake", not a silent hang-up.
#[tokio::test]
async fn an_oversized_login_packet_gets_bad_handshake_as_from_the_server() {
    let proxy = Proxy::start();
    let caps: u32 = 0x0000_0200 | 0x0000_8000 | 0x0008_0000 | 0x0010_0000;
    let mut login = [
        &caps.to_le_bytes()[..],
        &(1u32 << 24).to_le_bytes(),
        &[45],
        &[0; 23],
    ]
    .concat();
    login.extend_from_slice(b"app\0\0mysql_native_password\0");
    let mut attrs = Vec::new();
    while attrs.len() < 70_000 {
        attrs.extend_from_slice(&[10]);
        attrs.extend_from_slice(b"kkkkkkkkkk");
        attrs.extend_from_slice(&[250]);
        attrs.extend_from_slice(&[b'v'; 250]);
    }
    login.push(0xFD);
    login.extend_from_slice(&(attrs.len() as u32).to_le_bytes()[..3]);
    login.extend_from_slice(&attrs);
    for addr in ["127.0.0.1:3306".to_string(), proxy.addr.to_string()] {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut header = [0u8; 4];
        s.read_exact(&mut header).await.expect("greeting header");
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut greeting = vec![0u8; len];
        s.read_exact(&mut greeting).await.expect("greeting");
        let mut packet = (login.len() as u32).to_le_bytes();
        packet[3] = 1;
        s.write_all(&packet).await.expect("header");
        s.write_all(&login).await.expect("login");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("an answer, then the end")
            .expect("read");
        assert!(answer.len() > 7, "{addr}: nothing sent back");
        assert_eq!(answer[3], 2, "{addr}: sequence id");
        assert_eq!(answer[4], 0xFF, "{addr}: an ERR packet");
        assert_eq!(u16::from_le_bytes([answer[5], answer[6]]), 1043, "{addr}");
    }
}

/// Results larger than the backend read buffer, with rows of every length, so frames straddle
/// the buffer's end at every offset: the batched copy of whole buffered frames and the
/// frame-by-frame copy of the straddling ones must hand the client every row intact.
#[tokio::test]
async fn results_larger_than_a_read_buffer_arrive_row_for_row() {
    let proxy = Proxy::start();
    let sql = "SELECT seq, REPEAT(CHAR(65 + seq % 26), seq % 701) FROM app.seq_1_to_3000";
    let want: Vec<(u64, String)> = direct(3306).await.query(sql).await.expect("direct");
    assert_eq!(want.len(), 3000);
    let mut c = proxy.conn().await;
    for _ in 0..2 {
        let text: Vec<(u64, String)> = c.query(sql).await.expect("text");
        assert!(text == want, "text protocol result differs");
        let binary: Vec<(u64, String)> = c.exec(sql, ()).await.expect("prepared");
        assert!(binary == want, "binary protocol result differs");
    }
    // Several results in one response, each ending in an OK (or EOF) packet.
    let mut multi = c
        .query_iter(format!("{sql}; SELECT 1, 'x'; {sql}"))
        .await
        .expect("multi");
    let mut sets = Vec::new();
    while !multi.is_empty() {
        let rows: Vec<(u64, String)> = multi.collect().await.expect("set");
        sets.push(rows);
    }
    assert_eq!(sets.len(), 3);
    assert!(
        sets[0] == want && sets[2] == want,
        "multi-result sets differ"
    );
    assert_eq!(sets[1], vec![(1, "x".to_string())]);
}

#[tokio::test]
async fn a_client_that_leaves_mid_result_does_not_harm_other_sessions() {
    let proxy = Proxy::start_with(|t| pool_settings(t, "max_connections = 4"));
    for _ in 0..6 {
        let mut raw = raw_client(
            &proxy,
            mysql_common::constants::CapabilityFlags::CLIENT_DEPRECATE_EOF,
        )
        .await;
        raw.send_command(b"\x03SELECT REPEAT('x', 1000) FROM seq_1_to_100000")
            .await
            .expect("send");
        let mut buf = Vec::new();
        for _ in 0..50 {
            rwsplit::protocol::frame::read_packet(&mut raw.reader, &mut buf, 1 << 24)
                .await
                .expect("first rows");
        }
        drop(raw);
    }
    // The pool (4 per backend) would be used up if those connections had not been discarded
    // or cleaned; each new session must get a working connection that has no stale result.
    for _ in 0..10 {
        let mut c = proxy.conn().await;
        let n: Option<u64> = c
            .query_first("SELECT 7")
            .await
            .expect("read after abandoned results");
        assert_eq!(n, Some(7));
    }
}

#[tokio::test]
async fn an_exhausted_pool_answers_1040_instead_of_hanging() {
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"300ms\"\nmax_connections = 1")
    });
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "pool", "id INT").await;
    a.query_drop("BEGIN").await.expect("begin");
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");

    let mut b = proxy.conn().await;
    let started = Instant::now();
    let shared = proxy.shared.clone();
    let watcher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        shared.pools.stats()[0].waiting
    });
    let err = b
        .query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect_err("the only primary connection is taken");
    assert_eq!(
        watcher.await.expect("watcher"),
        1,
        "the waiting checkout is counted"
    );
    assert_eq!(server_code(&err), Some(1040), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    a.query_drop("COMMIT").await.expect("commit");
    a.disconnect().await.expect("disconnect");
    // The connection is back in the pool: b can write now.
    let insert = async || b.query_drop(format!("INSERT INTO {t} VALUES (3)")).await;
    let what = "the pool never freed up";
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        what,
        insert,
    )
    .await;
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// The primary's pool gauges.
fn primary_pool(proxy: &Proxy) -> rwsplit::pool::BackendPoolStats {
    proxy.shared.pools.stats().remove(0)
}

#[tokio::test]
async fn the_backend_limit_counts_idle_connections_of_every_pool() {
    use mysql_common::constants::CapabilityFlags as C;
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"300ms\"\nmax_connections = 2")
    });
    // Clients with different capabilities get connections from different pools; the limit
    // of 2 to the primary holds across them, and an idle connection of one pool makes room
    // for another instead of a 1040.
    for caps in [
        C::empty(),
        C::CLIENT_DEPRECATE_EOF,
        C::CLIENT_MULTI_STATEMENTS,
        C::CLIENT_MULTI_STATEMENTS | C::CLIENT_DEPRECATE_EOF,
    ] {
        let mut raw = raw_client(&proxy, caps).await;
        let o = raw
            .run_internal(b"\x03/* rwsplit:primary */ SELECT 1", ResponseKind::Query)
            .await
            .expect("query")
            .expect("ok");
        assert_eq!(o.result_sets, 1);
        raw.send_command(&[rwsplit::protocol::Command::Quit as u8])
            .await
            .expect("quit");
        drop(raw);
        // The session returns its connection when it sees the quit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = primary_pool(&proxy);
        assert!(s.idle + s.in_use <= 2, "{s:?}");
    }
}

#[tokio::test]
async fn min_idle_connections_are_opened_and_kept() {
    let proxy = Proxy::start_with(|t| pool_settings(t, "min_idle = 3"));
    let mut c = proxy.conn().await;
    c.query_drop("/* rwsplit:primary */ SELECT 1")
        .await
        .expect("query");
    c.disconnect().await.expect("disconnect");
    let topped_up = async || match primary_pool(&proxy) {
        s if s.idle >= 3 && s.in_use == 0 => Ok(()),
        s => Err(format!("{s:?}")),
    };
    let what = "the pool was not topped up";
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        what,
        topped_up,
    )
    .await;
    // They are real, working connections.
    let mut c = proxy.conn().await;
    let n: Option<u32> = c
        .query_first("/* rwsplit:primary */ SELECT 5")
        .await
        .expect("query");
    assert_eq!(n, Some(5));
}

#[tokio::test]
async fn the_greeting_mirrors_the_primary_version_unless_configured() {
    let proxy = Proxy::start();
    let primary: Option<String> = direct(PRIMARY_PORT)
        .await
        .query_first("SELECT VERSION()")
        .await
        .expect("version");
    let primary = primary.expect("row");
    // The monitor reads the primary's greeting within its first interval.
    let mirrored = async || {
        let (a, b, p) = proxy.conn().await.server_version();
        match format!("{a}.{b}.{p}") {
            v if primary.starts_with(&v) => Ok(()),
            v => Err(format!("greeting says {v}, primary {primary}")),
        }
    };
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "version",
        mirrored,
    )
    .await;

    let proxy = Proxy::start_with(|t| {
        t.replace(
            "[proxy]\n",
            "[proxy]\nserver_version = \"8.0.36-rwsplit\"\n",
        )
    });
    let c = proxy.conn().await;
    assert_eq!(c.server_version(), (8, 0, 36));
}

/// Logs in by hand as `app` naming `plugin` in the handshake response; answers an auth switch
/// with a mysql_native_password scramble of `password`. Returns the final packet (OK or ERR)
/// and whether a switch to mysql_native_password was asked for.
async fn login_with_plugin(proxy: &Proxy, plugin: &[u8], password: &str) -> (Vec<u8>, bool) {
    login_as(proxy, b"app", plugin, b"not a real scramble", password).await
}

/// Sends a login packet with `response` as the auth data and returns the stream, the first
/// reply and its sequence id.
async fn send_login(
    proxy: &Proxy,
    user: &[u8],
    plugin: &[u8],
    response: &[u8],
) -> (tokio::net::TcpStream, Vec<u8>, u8) {
    use mysql_common::constants::CapabilityFlags as C;
    use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
    use mysql_common::proto::MySerialize;
    use rwsplit::protocol::frame;

    let mut s = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let mut buf = Vec::new();
    let seq = frame::read_packet(&mut s, &mut buf, 1 << 16)
        .await
        .expect("greeting");
    let greeting = mysql_common::io::ParseBuf(&buf)
        .parse::<HandshakePacket<'_>>(())
        .expect("parse greeting");
    let mut nonce = greeting.nonce();
    nonce.truncate(20);
    let caps = C::CLIENT_PROTOCOL_41
        | C::CLIENT_SECURE_CONNECTION
        | C::CLIENT_PLUGIN_AUTH
        | C::CLIENT_LONG_PASSWORD
        | C::CLIENT_TRANSACTIONS;
    let resp = HandshakeResponse::new(
        Some(response),
        (0, 0, 0),
        Some(user),
        None::<&[u8]>,
        Some(AuthPlugin::Other(plugin.into())),
        caps,
        None,
        1 << 24,
    );
    let mut out = Vec::new();
    resp.serialize(&mut out);
    frame::write_packet(&mut s, seq.wrapping_add(1), &out)
        .await
        .expect("send login");
    let seq = frame::read_packet(&mut s, &mut buf, 1 << 16)
        .await
        .expect("reply");
    (s, buf, seq)
}

/// `login_with_plugin` as `user`, sending `response` as the handshake's auth response. A
/// caching_sha2_password fast-auth success (0x01 0x03) before the final packet is skipped.
async fn login_as(
    proxy: &Proxy,
    user: &[u8],
    plugin: &[u8],
    response: &[u8],
    password: &str,
) -> (Vec<u8>, bool) {
    use mysql_common::packets::AuthSwitchRequest;
    use rwsplit::protocol::frame;

    let (mut s, mut buf, mut seq) = send_login(proxy, user, plugin, response).await;
    if buf.as_slice() == [0x01, 0x03] {
        seq = frame::read_packet(&mut s, &mut buf, 1 << 16)
            .await
            .expect("reply after fast auth");
    }
    if buf.as_slice().first() != Some(&0xFE) {
        return (buf, false);
    }
    let switch = mysql_common::io::ParseBuf(&buf)
        .parse::<AuthSwitchRequest<'_>>(())
        .expect("auth switch request");
    assert_eq!(switch.auth_plugin().as_bytes(), b"mysql_native_password");
    let data = mysql_common::scramble::scramble_native(switch.plugin_data(), password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    frame::write_packet(&mut s, seq.wrapping_add(1), &data)
        .await
        .expect("send switch response");
    frame::read_packet(&mut s, &mut buf, 1 << 16)
        .await
        .expect("final reply");
    (buf, true)
}

#[tokio::test]
async fn a_client_with_an_unknown_auth_plugin_is_switched_to_native_password() {
    let proxy = Proxy::start();
    let (reply, switched) = login_with_plugin(&proxy, b"dialog", "app").await;
    assert!(switched, "no auth switch request");
    assert_eq!(
        reply.as_slice().first(),
        Some(&0x00),
        "expected OK, got {reply:?}"
    );

    let (reply, switched) = login_with_plugin(&proxy, b"dialog", "wrong").await;
    assert!(switched);
    assert_eq!(reply.as_slice().first(), Some(&0xFF));
    assert_eq!(u16::from_le_bytes([reply[1], reply[2]]), 1045);

    // A user rwsplit does not know is answered the same way, so the replies do not tell which
    // user names exist.
    let (reply, switched) =
        login_as(&proxy, b"nobody", b"dialog", b"not a real scramble", "x").await;
    assert!(
        switched,
        "an unknown user was refused before the auth switch"
    );
    assert_eq!(reply.as_slice().first(), Some(&0xFF));
    assert_eq!(u16::from_le_bytes([reply[1], reply[2]]), 1045);
}

#[tokio::test]
async fn caching_sha2_clients_log_in_with_an_empty_password() {
    let proxy = Proxy::start_with(|t| {
        t.replace(
            "[proxy]\n",
            "[proxy]\nauth_plugin = \"caching_sha2_password\"\n",
        ) + "\n[[users]]\nname = \"nopw\"\npassword = \"\"\n"
    });
    // libmysqlclient and Connector/J send one NUL byte for no password. The OK comes at
    // once, as from the server: no "fast auth success" before it (PyMySQL would read that
    // as the OK, and the OK as the reply to its first command).
    for response in [&b"\0"[..], b""] {
        let (_, reply, _) = send_login(&proxy, b"nopw", b"caching_sha2_password", response).await;
        assert_eq!(
            reply.as_slice().first(),
            Some(&0x00),
            "{response:?}: {reply:?}"
        );
    }
    let (reply, _) = login_as(&proxy, b"nopw", b"caching_sha2_password", b"\0\0", "").await;
    assert_eq!(reply.as_slice().first(), Some(&0xFF), "{reply:?}");
}

#[tokio::test]
async fn a_client_past_max_client_connections_gets_1040_and_the_next_one_gets_in() {
    let proxy =
        Proxy::start_with(|t| t.replace("[proxy]\n", "[proxy]\nmax_client_connections = 2\n"));
    let mut a = proxy.conn().await;
    let b = proxy.conn().await;
    let e = Conn::new(proxy.opts())
        .await
        .expect_err("a third client is refused");
    assert_eq!(server_code(&e), Some(1040), "{e}");
    assert!(e.to_string().contains("max_client_connections"), "{e}");
    // The sessions already in are untouched.
    let one: u8 = a.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    b.disconnect().await.unwrap();
    // The slot frees when the session ends (after rwsplit has seen the close).
    let mut c = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "a client once one left",
        async || Conn::new(proxy.opts()).await,
    )
    .await;
    let two: u8 = c.query_first("SELECT 2").await.unwrap().unwrap();
    assert_eq!(two, 2);
}

/// A session's own `wait_timeout`, shorter than `proxy.client_idle_timeout`, disconnects it
/// when it is idle that long, as the server would; another session keeps the proxy's limit,
/// and COM_RESET_CONNECTION gives the session the proxy's limit again.
#[tokio::test]
async fn a_sessions_own_shorter_wait_timeout_disconnects_it() {
    let proxy = Proxy::start();
    let mut short = proxy.conn().await;
    let mut other = proxy.conn().await;
    let mut reset = proxy.conn().await;
    short
        .query_drop("SET SESSION wait_timeout = 1")
        .await
        .expect("set");
    reset
        .query_drop("SET SESSION wait_timeout = 1")
        .await
        .expect("set");
    reset.reset().await.expect("reset");
    let w: Option<u64> = short
        .query_first("SELECT @@wait_timeout")
        .await
        .expect("read it back");
    assert_eq!(w, Some(1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = short
        .query_drop("SELECT 1")
        .await
        .expect_err("idle past its wait_timeout");
    assert!(server_code(&e).is_none(), "{e}");
    for (name, c) in [("other", &mut other), ("reset", &mut reset)] {
        let n: Option<u32> = c
            .query_first("SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(n, Some(1), "{name}");
    }
}

/// `proxy.client_idle_timeout`: a client silent that long is disconnected, as by the server's
/// `wait_timeout`; one that keeps talking stays however long it lives; and a transaction left
/// open by the client that was cut is rolled back, not left holding its locks.
#[tokio::test]
async fn clients_idle_past_the_timeout_are_disconnected() {
    let proxy =
        Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nclient_idle_timeout = \"1s\""));
    let t = unique("idle");
    let mut d = direct(3306).await;
    d.query_drop(format!("CREATE TABLE app.{t} (id INT PRIMARY KEY)"))
        .await
        .expect("create");
    let mut busy = proxy.conn().await;
    let mut idle = proxy.conn().await;
    let mut in_trx = proxy.conn().await;
    in_trx.query_drop("BEGIN").await.expect("begin");
    in_trx
        .query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let n: Option<u32> = busy
            .query_first("SELECT 1")
            .await
            .expect("a busy client stays");
        assert_eq!(n, Some(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (name, c) in [("idle", &mut idle), ("idle in a transaction", &mut in_trx)] {
        let e = c
            .query_drop("SELECT 1")
            .await
            .expect_err("an idle client is disconnected");
        assert!(server_code(&e).is_none(), "{name}: {e}");
    }
    // The insert was rolled back and its row lock released: the same row goes in at once.
    d.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
        .await
        .expect("lock wait");
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "the cut transaction's row",
        async || {
            let n: Option<u64> = d
                .query_first(format!("SELECT COUNT(*) FROM app.{t}"))
                .await
                .map_err(|e| e.to_string())?;
            if n == Some(0) {
                Ok(())
            } else {
                Err(format!("{n:?} rows"))
            }
        },
    )
    .await;
    d.query_drop(format!("INSERT INTO app.{t} VALUES (1)"))
        .await
        .expect("the row lock was released");
    d.query_drop(format!("DROP TABLE app.{t}"))
        .await
        .expect("drop");
}

/// Packets of 16 MiB and more are split into several frames each way: a statement that large
/// reaches the server whole, a row that large reaches the client whole, by text and by prepared
/// statement (whose long parameter mysql_async sends as COM_STMT_SEND_LONG_DATA).
#[tokio::test]
async fn packets_over_16_mib_pass_both_ways() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "big", "id INT PRIMARY KEY, b LONGBLOB").await;
    // 0xFFFFFF bytes exactly is the frame limit: one payload byte more or less on either side.
    let sizes = [
        (1, (1 << 24) - 1 - 40),
        (2, 20 << 20),
        (3, (1 << 24) * 2 + 5),
    ];
    for (id, len) in sizes {
        let blob: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        c.query_drop(format!("INSERT INTO {t} VALUES ({id}, '{blob}')"))
            .await
            .unwrap_or_else(|e| panic!("text insert of {len} bytes: {e}"));
        let back: Option<Vec<u8>> = c
            .query_first(format!(
                "/* rwsplit:primary */ SELECT b FROM {t} WHERE id = {id}"
            ))
            .await
            .expect("text select");
        assert!(
            back.as_deref() == Some(blob.as_bytes()),
            "text row of {len} bytes differs"
        );
        c.exec_drop(
            format!("INSERT INTO {t} VALUES (?, ?)"),
            (id + 100, blob.as_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("prepared insert of {len} bytes: {e}"));
        let back: Option<Vec<u8>> = c
            .exec_first(
                format!("/* rwsplit:primary */ SELECT b FROM {t} WHERE id = ?"),
                (id + 100,),
            )
            .await
            .expect("prepared select");
        assert!(
            back.as_deref() == Some(blob.as_bytes()),
            "binary row of {len} bytes differs"
        );
    }
    // The session goes on with small statements after the big ones.
    let n: Option<u64> = c
        .query_first(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM {t}"))
        .await
        .expect("count");
    assert_eq!(n, Some(6));
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// An execute that leaves out its parameter types (libmysqlclient binds them once, then sends
/// none) gets them put back by rwsplit, since the server statement may be shared. When that
/// pushes it past a 16 MiB frame, the server gets one frame more than the client sent, and
/// answers with sequence ids one higher than the client expects; the client must still get
/// its response in sequence (one past its own last frame), and the session goes on.
#[tokio::test]
async fn an_execute_lengthened_past_a_frame_is_answered_in_sequence() {
    use rwsplit::protocol::{Command, frame};
    use tokio::io::AsyncBufReadExt;
    let proxy = Proxy::start();
    let mut raw = raw_client(&proxy, mysql_common::constants::CapabilityFlags::empty()).await;
    let stmt = raw_prepare(&mut raw, "/* rwsplit:primary */ SELECT LENGTH(?)").await;
    let kind = ResponseKind::StmtExecute { cursor: false };
    // One iteration, null bitmap 0, types bound (a string), the value "x".
    let typed = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0xfe, 0, 1, b'x'],
    ]
    .concat();
    raw.run_internal(&typed, kind)
        .await
        .expect("execute")
        .expect("typed execute");
    // Without types: 12 bytes of header, a 4-byte length, then the value; the payload is one
    // byte short of a frame's maximum, and two bytes of types make it longer than one frame.
    let len = 0xFF_FFFE - 16;
    let mut untyped = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 0],
    ]
    .concat();
    untyped.push(0xfd);
    untyped.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    untyped.resize(untyped.len() + len, b'a');
    assert_eq!(untyped.len(), 0xFF_FFFE);
    let next = frame::write_packet(&mut raw.writer, 0, &untyped)
        .await
        .expect("send");
    assert_eq!(next, 1, "one frame");
    raw.writer.flush().await.expect("flush");
    let head = loop {
        let buf = raw.reader.fill_buf().await.expect("response");
        if buf.len() >= 4 {
            break buf[..4].to_vec();
        }
    };
    assert_eq!(head[3], 1, "the response's first sequence id");
    let o = raw
        .read_internal(kind)
        .await
        .expect("read")
        .expect("result");
    assert_eq!(o.rows, 1);
    let v = raw
        .query_scalar("SELECT 1")
        .await
        .expect("next statement")
        .expect("no error");
    assert_eq!(v.as_deref(), Some("1"));
}

/// A command over `proxy.max_packet_size` gets the server's own error for it (1153) and the
/// connection is closed, as by the server past `max_allowed_packet`; rwsplit never buffers it
/// whole, and other sessions go on.
#[tokio::test]
async fn a_command_over_max_packet_size_gets_1153_and_harms_no_one_else() {
    let proxy = Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nmax_packet_size = \"1MiB\""));
    let mut other = proxy.conn().await;
    let mut c = proxy.conn().await;
    let fits = "x".repeat((1 << 20) - 100);
    let n: Option<u64> = c
        .query_first(format!("SELECT LENGTH('{fits}')"))
        .await
        .expect("a command under the limit");
    assert_eq!(n, Some(fits.len() as u64));
    // By raw protocol, to read exactly what comes back: 3 frames' worth, the first 16 MiB one
    // refused from its header.
    let (mut raw, seq) = send_20_mib_command(&proxy).await;
    assert_eq!(
        seq, 1,
        "the answer follows the frame refused (sequence id 0)"
    );
    let mut buf = Vec::new();
    let end = rwsplit::protocol::frame::read_packet(&mut raw.reader, &mut buf, 1 << 24).await;
    assert!(end.is_err(), "the connection is closed after the ERR");
    // (Not by a client library: one that is still writing when the connection closes may see
    // the reset before the ERR, as with the server.)
    for s in [&mut c, &mut other] {
        let n: Option<u32> = s
            .query_first("SELECT 1")
            .await
            .expect("other sessions go on");
        assert_eq!(n, Some(1));
    }
}

/// Refused in its second frame (the first, of 16 MiB, under the limit), a command's ERR takes
/// the sequence id after that frame's, as the client expects.
#[tokio::test]
async fn a_command_refused_in_its_second_frame_is_answered_in_sequence() {
    let proxy = Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nmax_packet_size = \"17MiB\""));
    let (_, seq) = send_20_mib_command(&proxy).await;
    assert_eq!(seq, 2);
}

/// Sends a 20 MiB COM_QUERY by raw protocol and reads the answer, which must be the server's
/// error for a packet too large (1153): the connection, and the answer's sequence id.
async fn send_20_mib_command(proxy: &Proxy) -> (rwsplit::pool::BackendConn, u8) {
    let mut raw = raw_client(proxy, mysql_common::constants::CapabilityFlags::empty()).await;
    let mut big = b"\x03SELECT '".to_vec();
    big.resize(20 << 20, b'y');
    let sent = raw.send_command(&big).await;
    let mut buf = Vec::new();
    let got = rwsplit::protocol::frame::read_packet(&mut raw.reader, &mut buf, 1 << 24).await;
    assert!(got.is_ok(), "no answer ({got:?}; send: {sent:?})");
    assert_eq!(<[u8]>::first(&buf), Some(&0xFF), "an ERR packet: {buf:?}");
    assert_eq!(u16::from_le_bytes([buf[1], buf[2]]), 1153);
    (raw, got.unwrap_or_default())
}

/// An idle pooled connection the server closed (it restarted, `wait_timeout`, a KILL) is not
/// lent again: the session's next statement runs on another connection instead of failing.
#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_lent_again() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    closed_primary_connection_is_not_lent_again(&mut c, PRIMARY_PORT).await;
}

/// A backend connection lost while it held what no other connection has closes the client's
/// connection after the error, as losing the server itself would. Going on would run the
/// client's next statements outside the transaction it thinks is open (a retried INSERT would
/// autocommit: half a transaction), or without the named lock it thinks it holds. A session
/// that held nothing on the lost connection goes on.
#[tokio::test]
async fn losing_the_backend_connection_of_a_transaction_or_a_lock_closes_the_client_connection() {
    let proxy = Proxy::start();
    let t = unique("lost_trx");
    let mut setup = proxy.conn().await;
    setup
        .query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
        .await
        .expect("create");

    let mut c = proxy.conn().await;
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert in the transaction");
    let thread: u64 = c
        .query_first("SELECT CONNECTION_ID()")
        .await
        .expect("thread")
        .expect("row");
    kill_thread(PRIMARY_PORT, thread).await;
    // The retried INSERT must fail too: the session would run it outside the transaction its
    // client thinks is open.
    assert_lost_and_closed(
        &mut c,
        &format!("INSERT INTO {t} VALUES (2)"),
        "open transaction",
        &format!("INSERT INTO {t} VALUES (3)"),
    )
    .await;
    let mut d = direct(PRIMARY_PORT).await;
    let rows: u64 = d
        .query_first(format!("SELECT COUNT(*) FROM app.{t}"))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(rows, 0, "part of the transaction was committed");

    let mut l = proxy.conn().await;
    let lock = unique("lost_lock");
    let (got, thread): (u64, u64) = l
        .query_first(format!("SELECT GET_LOCK('{lock}', 0), CONNECTION_ID()"))
        .await
        .expect("get_lock")
        .expect("row");
    assert_eq!(got, 1);
    kill_thread(PRIMARY_PORT, thread).await;
    // The first statement on the dead connection fails; the session must not go on after it.
    assert_lost_and_closed(
        &mut l,
        &format!("SELECT IS_USED_LOCK('{lock}')"),
        "named locks (GET_LOCK)",
        "/* rwsplit:primary */ DO 1",
    )
    .await;

    // Nothing held on the lost connection (multiplexed, autocommit): at most the statement that
    // found it dead fails, and the session goes on.
    let mut m = proxy.conn().await;
    kill_thread(PRIMARY_PORT, primary_thread(&mut m).await).await;
    let _ = m.query_drop(format!("INSERT INTO {t} VALUES (4)")).await;
    m.query_drop(format!("INSERT INTO {t} VALUES (5)"))
        .await
        .expect("the session goes on");
}

/// rwsplit's own OK packets (COM_PING here) carry the session's `NO_BACKSLASH_ESCAPES` as the
/// server's do: drivers that escape values themselves (go-sql-driver's `interpolateParams`)
/// choose quote doubling or backslashes by that flag.
#[tokio::test]
async fn rwsplits_own_ok_packets_carry_no_backslash_escapes() {
    use mysql_common::constants::CapabilityFlags as C;
    let proxy = Proxy::start();
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    const NBE: u16 = 0x0200;
    assert!(raw.ping().await.expect("ping"));
    assert_eq!(raw.status & NBE, 0, "NO_BACKSLASH_ESCAPES before the SET");
    raw.query_scalar("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
        .await
        .expect("set")
        .expect("set ok");
    assert!(raw.ping().await.expect("ping"));
    assert_ne!(
        raw.status & NBE,
        0,
        "rwsplit's OK to COM_PING lost NO_BACKSLASH_ESCAPES"
    );
}

/// A client that stops reading a large result is disconnected after `proxy.net_timeout`, and
/// the backend connection the result came from is freed: another session gets the one
/// primary connection well within its checkout timeout.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_net_timeout() {
    use mysql_common::constants::CapabilityFlags as C;
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"6s\"\nmax_connections = 1")
            .replace("[proxy]", "[proxy]\nnet_timeout = \"1s\"")
    });
    let mut stalled = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    // About 50 MB of rows, far more than the sockets hold; never read.
    stalled
        .send_command(b"\x03/* rwsplit:primary */ SELECT REPEAT('x', 1000000) FROM seq_1_to_50")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut other = proxy.conn().await;
    let started = Instant::now();
    let one: Option<i64> = other
        .query_first("/* rwsplit:primary */ SELECT 1")
        .await
        .expect("the primary connection was not freed");
    assert_eq!(one, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the other session waited {:?} for the primary connection",
        started.elapsed()
    );
    drop(stalled);
}

/// `proxy.net_timeout` is for a stall, not for a whole packet: a packet that keeps coming, in
/// parts less than `net_timeout` apart, is read however long it takes.
#[tokio::test]
async fn a_slow_packet_that_keeps_coming_is_not_cut_off() {
    use mysql_common::constants::CapabilityFlags as C;
    let proxy = Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nnet_timeout = \"1s\""));
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    // A query of 300,000 bytes whose one row says it arrived whole, sent in 5 parts 400 ms
    // apart (1.6 s in all).
    let mut sql = b"SELECT 1 FROM DUAL WHERE LENGTH('".to_vec();
    let tail = b"') = 299960";
    sql.resize(300_000 - tail.len(), b'x');
    let len = sql.len() - b"SELECT 1 FROM DUAL WHERE LENGTH('".len();
    let tail = format!("') = {len}");
    sql.extend_from_slice(tail.as_bytes());
    let packet = [&[0x03][..], &sql].concat();
    let framed = [
        &rwsplit::pool::BackendConn::header(packet.len(), 0)[..],
        &packet,
    ]
    .concat();
    for part in framed.chunks(framed.len().div_ceil(5)) {
        raw.writer.write_all(part).await.expect("write");
        raw.writer.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let o = raw
        .read_internal(ResponseKind::Query)
        .await
        .expect("the slow packet's answer")
        .expect("no error");
    assert_eq!(o.rows, 1, "the query did not arrive whole");
}

/// A packet begun and never finished: the session closes after `proxy.net_timeout`, not after
/// `client_idle_timeout`.
#[tokio::test]
async fn a_packet_begun_and_not_finished_is_cut_off_after_net_timeout() {
    use mysql_common::constants::CapabilityFlags as C;
    let proxy = Proxy::start_with(|t| t.replace("[proxy]", "[proxy]\nnet_timeout = \"1s\""));
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    // A header declaring 1,000 bytes, then 10 of them.
    raw.writer
        .write_all(&[
            0xe8, 0x03, 0x00, 0x00, 0x03, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', b' ',
        ])
        .await
        .expect("write");
    raw.writer.flush().await.expect("flush");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.reader.read(&mut byte))
        .await
        .expect("the session was still open after 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to close");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before net_timeout",
        started.elapsed()
    );
}

/// COM_REFRESH (`mysqladmin flush-tables`, `mysql_refresh()`) runs on the primary, as the
/// server runs it; a binlog dump (a replica or a change-data-capture tool) is refused with a
/// clear error, not "Unknown command" (which drivers take for a lost connection).
#[tokio::test]
async fn com_refresh_reaches_the_primary_and_a_binlog_dump_is_refused_clearly() {
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = Proxy::start_with(with_root_user);
    let creds = rwsplit::protocol::connect::Credentials {
        user: "root",
        password: "root",
        database: None,
        capabilities: mysql_common::constants::CapabilityFlags::CLIENT_DEPRECATE_EOF,
        collation: 45,
    };
    let address = proxy.addr.to_string();
    let plain = rwsplit::tls::BackendTls::default();
    let mut raw = rwsplit::pool::BackendConn::connect(
        &address,
        &creds,
        Duration::from_secs(5),
        &plain,
        &address,
    )
    .await
    .expect("raw login as root");
    // REFRESH_TABLES (0x04): FLUSH TABLES.
    raw.run_internal(&[0x07, 0x04], K::Single)
        .await
        .expect("refresh")
        .expect("refresh ok");
    // COM_BINLOG_DUMP: position 4, no flags, server id 99, file name.
    let dump = [
        &[0x12, 4, 0, 0, 0, 0, 0, 99, 0, 0, 0][..],
        b"mysql-bin.000001",
    ]
    .concat();
    let err = raw
        .run_internal(&dump, K::Single)
        .await
        .expect("binlog dump answered")
        .expect_err("refused");
    let e = rwsplit::protocol::packets::parse_err(&err.payload).expect("ERR");
    assert_eq!(e.code, 1235, "{}", String::from_utf8_lossy(e.message));
    // The session goes on.
    raw.run_internal(b"\x03SELECT 1", K::Query)
        .await
        .expect("query")
        .expect("query ok");
}

/// `COMMIT RELEASE` commits and ends the connection, as on the server: the client's next
/// statement finds it closed, and the backend connection the server closed is not lent to
/// anyone.
#[tokio::test]
async fn commit_release_ends_the_clients_connection_after_committing() {
    let proxy =
        Proxy::start_with(|t| pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1"));
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "commit_release", "id INT").await;
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    c.query_drop("COMMIT RELEASE")
        .await
        .expect("commit release");
    let after = c.query_drop("SELECT 1").await;
    assert!(
        after.is_err(),
        "the connection outlived COMMIT RELEASE: {after:?}"
    );
    let mut d = proxy.conn().await;
    let n: Option<i64> = d
        .query_first(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM {t}"))
        .await
        .expect("count, on the one primary connection");
    assert_eq!(n, Some(1));
    d.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}
