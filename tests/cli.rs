//! The `rwsplit` binary itself: config checking, the slow query log, graceful shutdown.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_rwsplit");

/// A running rwsplit this test started, with its log lines: killed when dropped if it is
/// still running (a failed assertion must not leave it behind). It is never reaped before that
/// check, so its pid cannot belong to another process.
struct Binary {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    /// Waits (up to 20 s) for a log line containing `what` and returns it.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(_) => panic!("no log line with {what:?}"),
            }
        }
    }

    /// The log lines not read yet, up to the end of the output (call after it exited).
    fn rest(&self) -> String {
        let mut out = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out += &l;
            out.push('\n');
        }
        out
    }
}

impl std::ops::Deref for Binary {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.child
    }
}

impl std::ops::DerefMut for Binary {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free port and the test config for the binary on it: `level` replaces the logging level
/// line, `extra` is appended.
fn binary_config(level: &str, extra: &str) -> (u16, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let text = std::fs::read_to_string(format!("{}/config/test.toml", repo_root()))
        .expect("read")
        .replace(
            "listen = \"127.0.0.1:6034\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("level = \"warn\"", level)
        + extra;
    (port, text)
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", unique("cfg")));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_config_accepts_the_example_and_names_a_bad_key() {
    let ok = Command::new(BIN)
        .args([
            "check-config",
            &format!("{}/config/rwsplit.toml", repo_root()),
        ])
        .output()
        .expect("run rwsplit");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));

    let text = std::fs::read_to_string(format!("{}/config/test.toml", repo_root()))
        .expect("read")
        .replace("[pool]\n", "[pool]\nmax_conections = 5\n");
    let bad = write_config("bad", &text);
    let out = Command::new(BIN)
        .args(["check-config", &bad.display().to_string()])
        .output()
        .expect("run rwsplit");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections"), "{err}");
}

#[tokio::test]
async fn the_binary_logs_slow_queries_and_stops_cleanly_on_sigterm() {
    topology_up();
    let (port, text) = binary_config(
        "level = \"info\"\nformat = \"json\"",
        "\n[admin]\nlisten = \"off\"\n\n[insight]\nslow_query_threshold = \"200ms\"\n",
    );
    let path = write_config("slow", &text);
    let mut child = start_binary(&path);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"))
        .prefer_socket(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "rwsplit did not start: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    conn.query_drop("SELECT SLEEP(0.3)").await.expect("slow");
    conn.query_drop("SELECT 1").await.expect("fast");
    // A session left open and idle does not hold up the shutdown.
    let mut idle = mysql_async::Conn::new(opts.clone())
        .await
        .expect("idle session");
    idle.ping().await.expect("ping");
    conn.disconnect().await.expect("disconnect");
    // Nor does one that runs statement after statement: it ends between two of them.
    let mut busy = mysql_async::Conn::new(opts.clone())
        .await
        .expect("busy session");
    let looping = tokio::spawn(async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if busy.query_drop("SELECT SLEEP(0.05)").await.is_err() {
                return;
            }
        }
    });

    let stopping = Instant::now();
    let exit = tokio::task::spawn_blocking(move || (stop_binary(&mut child), child))
        .await
        .expect("stop");
    let (exit, child) = exit;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "rwsplit did not stop promptly on SIGTERM with an idle and a busy session open ({:?})",
        stopping.elapsed()
    );
    looping.await.expect("the busy session's loop");
    let out = child.rest();
    assert!(exit.success(), "exit {exit:?}\n{out}");
    drop(idle);
    let slow: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "slow query")
        .collect();
    assert_eq!(slow.len(), 1, "one slow query expected in:\n{out}");
    let f = &slow[0]["fields"];
    assert_eq!(f["digest"], "SELECT SLEEP(?)");
    assert!(f["duration_ms"].as_u64().is_some_and(|ms| ms >= 300), "{f}");
    assert!(
        f["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("replica")),
        "{f}"
    );
    assert_eq!(f["user"], "app");
    assert_eq!(f["schema"], "app");
    // The session's span (not entered while statements run) is still the slow line's, and
    // the connect line's, the same session's.
    let connected = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == "client connected" && v["span"]["id"] == slow[0]["span"]["id"]
        })
        .unwrap_or_default();
    for line in [&slow[0], &connected] {
        let span = &line["span"];
        assert_eq!(span["name"], "session", "{line}");
        assert_eq!(span["user"], "app", "{line}");
        assert!(span["id"].is_u64(), "{line}");
        // No list of entered spans: it would be empty on the slow line and not on the other.
        assert!(line.get("spans").is_none(), "{line}");
        assert!(
            span["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:")),
            "{line}"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn clients_on_the_unix_socket_are_served_and_the_socket_goes_with_the_process() {
    topology_up();
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("rwsplit")));
    let (port, text) = binary_config("level = \"info\"", "");
    // TLS required of TCP clients: the socket, a secure transport as for the server's
    // `require_secure_transport`, takes plain ones.
    let (cert, key) = self_signed();
    let text = text.replace(
        "[proxy]\n",
        &format!(
            "[proxy]\nsocket = \"{}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
             tls_required = true\n",
            socket.display()
        ),
    );
    let path = write_config("socket", &text);
    let mut child = start_binary(&path);
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"));
    // The socket takes its path once the first round of backend checks is done.
    let mut conn = eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "a client on the socket",
        async || mysql_async::Conn::new(opts.clone()).await,
    )
    .await;
    let primary = server_id(PRIMARY_PORT).await;
    let read: u64 = conn
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        read, primary,
        "a read from a socket client went to the primary"
    );
    conn.query_drop("BEGIN").await.unwrap();
    let in_trx: u64 = conn
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_trx, primary);
    conn.query_drop("COMMIT").await.unwrap();
    conn.disconnect().await.unwrap();
    // The server names a socket client's host `localhost`; so does rwsplit.
    let denied = mysql_async::Conn::new(opts.pass(Some("wrong")))
        .await
        .expect_err("a wrong password is refused");
    match denied {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1045);
            assert!(e.message.contains("'app'@'localhost'"), "{}", e.message);
        }
        e => panic!("expected a server error, got {e}"),
    }
    // And the mariadb CLI (libmariadb), as a DBA would connect.
    let cli = Command::new("mariadb")
        .args([
            &format!("--socket={}", socket.display()),
            "-uapp",
            "-papp",
            "-N",
            "-B",
            "-e",
            "SELECT 6 * 7",
            "app",
        ])
        .output()
        .expect("run the mariadb client");
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    // A plain TCP client is refused.
    let tcp = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("app"))
        .pass(Some("app"));
    match mysql_async::Conn::new(tcp).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 3159, "{}", e.message),
        other => panic!(
            "a plain TCP client with tls_required: {:?}",
            other.map(drop)
        ),
    }
    let exit = stop_binary(&mut child);
    assert!(exit.success(), "exit {exit:?}\n{}", child.rest());
    assert!(!socket.exists(), "the socket file outlived rwsplit");
    let _ = std::fs::remove_file(rwsplit::net::UnixSocket::lock_path(&socket));
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn status_prints_the_backends_of_a_running_proxy_as_a_table() {
    let proxy = Proxy::start();
    proxy.conn().await.ping().await.expect("ping");
    // The proxy runs on its own thread: blocking here is fine.
    let out = Command::new(BIN)
        .args(["status", "--admin", &proxy.admin.to_string()])
        .output()
        .expect("run rwsplit status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("BACKEND"), "{text}");
    assert!(
        lines[1].starts_with("primary") && lines[1].contains(" up "),
        "{text}"
    );
    for l in &lines[2..] {
        assert!(
            l.starts_with("replica") && l.contains(" replica ") && l.contains(" yes "),
            "{text}"
        );
    }
    // A wrong address is a clear error, not a panic.
    let out = Command::new(BIN)
        .args(["status", "--admin", "127.0.0.1:1"])
        .output()
        .expect("run rwsplit status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin API"));
}

/// Starts the binary with `config` and waits for its "listening" log line (the config must log
/// at info level).
fn start_binary(config: &std::path::Path) -> Binary {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["--config", &config.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rwsplit");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let b = Binary { child, lines };
    b.wait_for("rwsplit listening");
    b
}

fn stop_binary(child: &mut std::process::Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "rwsplit did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_takes_over_the_port_while_the_old_one_drains_with_no_failed_statement() {
    topology_up();
    let (port, text) = binary_config("level = \"info\"", "\n[admin]\nlisten = \"off\"\n");
    // The Unix socket too: the new instance renames its own over the old one's.
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("restart")));
    let text = text.replace(
        "[proxy]\n",
        &format!("[proxy]\nsocket = \"{}\"\n", socket.display()),
    );
    let path = write_config("restart", &text);
    let mut old = start_binary(&path);

    // A bounded load: connect, read, write, disconnect, as a web app's pool churns.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = unique("restart");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"))
        .prefer_socket(false);
    {
        let mut c = mysql_async::Conn::new(opts.clone()).await.expect("connect");
        c.query_drop(format!(
            "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, w INT)"
        ))
        .await
        .expect("create");
        c.disconnect().await.expect("disconnect");
    }
    let by_socket = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"));
    let mut workers = Vec::new();
    for w in 0..6 {
        let opts = if w < 4 {
            opts.clone()
        } else {
            by_socket.clone()
        };
        let (stop, t) = (stop.clone(), t.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let r = async {
                    let mut c = mysql_async::Conn::new(opts.clone()).await?;
                    c.query_drop("SELECT 1").await?;
                    c.query_drop(format!("INSERT INTO {t} (w) VALUES ({w})"))
                        .await?;
                    c.disconnect().await
                }
                .await;
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut new = tokio::task::spawn_blocking(move || start_binary(&path))
        .await
        .expect("start the new instance");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || stop_binary(&mut old))
        .await
        .expect("stop the old instance");
    assert!(status.success(), "the old instance exited with {status:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.expect("worker");
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "across the restart: {ok} connect+read+write+disconnect cycles, {} failed",
        failed.len()
    );
    assert!(ok > 50, "the load did not run: {ok}");
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    assert!(
        failed.is_empty(),
        "failed across the restart (net.ipv4.tcp_migrate_req = {}): {failed:?}",
        migrate.trim()
    );
    // The new instance serves alone now.
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("connect to the new instance");
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
    c.disconnect().await.expect("disconnect");
    let status = tokio::task::spawn_blocking(move || stop_binary(&mut new))
        .await
        .expect("stop the new instance");
    assert!(status.success());
    assert!(!socket.exists(), "the socket outlived both instances");
    let _ = std::fs::remove_file(rwsplit::net::UnixSocket::lock_path(&socket));
}

#[test]
fn sighup_reloads_the_config_file() {
    topology_up();
    let (_, text) = binary_config("level = \"info\"", "\n[admin]\nlisten = \"off\"\n");
    let path = write_config("hup", &text);
    let mut child = start_binary(&path);
    std::fs::write(
        &path,
        text.replace(
            "[[backends]]\nname = \"replica2\"\naddress = \"127.0.0.1:3308\"\nrole = \"replica\"\n",
            "",
        ),
    )
    .expect("rewrite");
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill -HUP");
    let line = child.wait_for("config reloaded");
    assert!(line.contains("removed [\"replica2\"]"), "{line}");
    let status = stop_binary(&mut child);
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_file(path);
}
