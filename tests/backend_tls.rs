//! TLS toward the servers (`[backend_tls]`), on the fault topology (`common::faults`), whose
//! servers `scripts/topology.sh` starts with a certificate of its test CA (for 127.0.0.1 and
//! `rwsplit-backend`, not `localhost`). The accounts used here require TLS, so a connection
//! that is not TLS is refused by the server itself. One at a time with the fault tests
//! (`.config/nextest.toml`): they restart these servers.

mod common;

use std::time::Duration;

use common::faults;
use common::*;
use mysql_async::prelude::*;

fn tls_file(name: &str) -> String {
    format!("{}/tls/{name}", faults::DIR)
}

/// Accounts on the fault topology that need TLS (`app_tls`, and `monitor_tls` for the monitor)
/// or a client certificate (`app_x509`).
async fn tls_accounts() {
    faults::healthy();
    let mut root = direct(faults::BASE).await;
    for (user, require) in [("app_tls", "SSL"), ("app_x509", "X509")] {
        root.query_drop(format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{user}' REQUIRE {require}"
        ))
        .await
        .expect("create account");
        root.query_drop(format!("GRANT ALL ON app.* TO '{user}'@'%'"))
            .await
            .expect("grant");
    }
    root.query_drop(
        "CREATE USER IF NOT EXISTS 'monitor_tls'@'%' IDENTIFIED BY 'monitor_tls' REQUIRE SSL",
    )
    .await
    .expect("create monitor account");
    root.query_drop("GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor_tls'@'%'")
        .await
        .expect("grant monitor");
    faults::topology(&["wait-sync"]);
}

/// The test config for the fault topology, as `user` (password: the name), the monitor as
/// `monitor_tls`, with `backend_tls` lines and `localhost` for 127.0.0.1 when `by_name`.
fn tls_proxy(user: &str, backend_tls: &str, by_name: bool) -> Proxy {
    let (user, backend_tls) = (user.to_string(), backend_tls.to_string());
    faults::proxy_with(move |t| {
        let t =
            t.replace(
                "name = \"app\"\npassword = \"app\"",
                &format!("name = \"{user}\"\npassword = \"{user}\""),
            )
            .replace(
                "user = \"rwsplit_monitor\"\npassword = \"monitor\"",
                "user = \"monitor_tls\"\npassword = \"monitor_tls\"",
            ) + &format!("\n[backend_tls]\n{backend_tls}\n");
        if by_name {
            // faults::proxy_with moves the 127.0.0.1 ports after this edit.
            t.replace("address = \"127.0.0.1:", "address = \"localhost:")
                .replace("localhost:3306", &format!("localhost:{}", faults::BASE))
                .replace("localhost:3307", &format!("localhost:{}", faults::BASE + 1))
                .replace("localhost:3308", &format!("localhost:{}", faults::BASE + 2))
        } else {
            t
        }
    })
}

fn as_user(proxy: &Proxy, user: &str) -> mysql_async::OptsBuilder {
    proxy.opts().user(Some(user)).pass(Some(user))
}

/// The server id and TLS cipher of the connection a statement ran on, read by that statement
/// (it reads a server table: always on the primary).
const WHERE_AND_CIPHER: &str = "SELECT @@server_id, (SELECT VARIABLE_VALUE FROM \
     information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher')";

/// A read on a replica as an account that requires TLS (so the server saw TLS), and the cipher
/// of the primary's connection.
async fn read_on_a_replica_and_cipher(c: &mut mysql_async::Conn) -> String {
    let id: Option<u64> = c.query_first("SELECT @@server_id").await.unwrap();
    assert!(matches!(id, Some(2 | 3)), "a read ran on server {id:?}");
    let (id, cipher): (u64, String) = c.query_first(WHERE_AND_CIPHER).await.unwrap().unwrap();
    assert_eq!(id, 1);
    cipher
}

/// Every backend's `up` in `/backends`.
async fn backends_up(proxy: &Proxy) -> Vec<bool> {
    let (status, body) = proxy.admin_get("/backends", None).await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let list = list.as_array().expect("array").clone();
    list.iter().map(|b| b["up"] == true).collect()
}

/// With `verify_identity` and the topology's CA, accounts that require TLS are served on every
/// server (reads on a replica, a transaction on the primary), and the monitor, whose account
/// requires TLS too, finds the replicas up and caught up over TLS (its pings and its
/// replication reads). With a client certificate, an account that REQUIREs X509 is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_that_require_tls_are_served_over_verified_tls_monitor_included() {
    tls_accounts().await;
    let ca = tls_file("ca.pem");
    let proxy = tls_proxy(
        "app_tls",
        &format!("mode = \"verify_identity\"\nca = \"{ca}\""),
        false,
    );
    proxy.replica_ready().await;
    assert_eq!(backends_up(&proxy).await, [true, true, true]);
    let (_, body) = proxy.admin_get("/backends", None).await;
    assert!(body.contains("\"tls\":\"verify_identity\""), "{body}");

    let mut c = mysql_async::Conn::new(as_user(&proxy, "app_tls"))
        .await
        .expect("app_tls logs in");
    let cipher = read_on_a_replica_and_cipher(&mut c).await;
    assert!(!cipher.is_empty(), "the primary connection is not TLS");
    let t = unique("btls");
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, v LONGTEXT)"))
        .await
        .unwrap();
    // A value over a TLS record (16 KiB) and a packet (16 MiB) each way.
    let big = "x".repeat(17 << 20);
    c.exec_drop(format!("INSERT INTO {t} VALUES (1, ?)"), (big.clone(),))
        .await
        .unwrap();
    let back: Option<String> = c
        .query_first(format!("SELECT v FROM {t} WHERE id = 1"))
        .await
        .unwrap();
    assert!(back == Some(big), "the value came back changed");
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
    drop(c);

    let x509 = |cert: &str| {
        let cert = match cert {
            "" => String::new(),
            _ => format!(
                "\ncert = \"{}\"\nkey = \"{}\"",
                tls_file("client.pem"),
                tls_file("client-key.pem")
            ),
        };
        tls_proxy(
            "app_x509",
            &format!("mode = \"verify_identity\"\nca = \"{ca}\"{cert}"),
            false,
        )
    };
    let with_cert = x509("client");
    let mut c = mysql_async::Conn::new(as_user(&with_cert, "app_x509"))
        .await
        .expect("app_x509 logs in");
    let one: Option<u8> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    let without = x509("");
    let e = async {
        let mut c = mysql_async::Conn::new(as_user(&without, "app_x509")).await?;
        c.query_drop("SELECT 1").await
    }
    .await
    .expect_err("no client certificate, no login");
    assert!(e.to_string().contains("Access denied"), "{e}");
}

/// The certificate is checked as the mode says: `verify_identity` refuses a server reached as
/// `localhost` (the certificate names 127.0.0.1), `verify_ca` takes it, a CA that did not sign
/// it is refused by `verify_ca` and not looked at by `required`; with TLS off, the account that
/// requires it is refused and the error says where to look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_checked_as_the_mode_says() {
    tls_accounts().await;
    let ca = tls_file("ca.pem");
    let (other_ca, _) = self_signed();
    let served = |proxy: Proxy| async move {
        proxy.replica_ready().await;
        let mut c = mysql_async::Conn::new(as_user(&proxy, "app_tls"))
            .await
            .expect("log in");
        assert!(!read_on_a_replica_and_cipher(&mut c).await.is_empty());
    };
    let refused = |proxy: Proxy, why: &'static str| async move {
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(100),
            why,
            async || match backends_up(&proxy).await {
                up if up.iter().all(|u| !u) => Ok(()),
                up => Err(format!("{up:?}")),
            },
        )
        .await;
    };
    served(tls_proxy(
        "app_tls",
        &format!("mode = \"verify_ca\"\nca = \"{ca}\""),
        true,
    ))
    .await;
    refused(
        tls_proxy(
            "app_tls",
            &format!("mode = \"verify_identity\"\nca = \"{ca}\""),
            true,
        ),
        "verify_identity took a certificate for another name",
    )
    .await;
    refused(
        tls_proxy(
            "app_tls",
            &format!("mode = \"verify_ca\"\nca = \"{other_ca}\""),
            false,
        ),
        "verify_ca took a certificate another CA signed",
    )
    .await;
    served(tls_proxy("app_tls", "mode = \"required\"", false)).await;
    served(tls_proxy("app_tls", "mode = \"preferred\"", true)).await;

    // TLS off (the default), the monitor on its own plain account.
    let plain = faults::proxy_with(|t| {
        t.replace(
            "name = \"app\"\npassword = \"app\"",
            "name = \"app_tls\"\npassword = \"app_tls\"",
        )
    });
    plain.replica_ready().await;
    let e = async {
        let mut c = mysql_async::Conn::new(as_user(&plain, "app_tls")).await?;
        c.query_drop("SELECT 1").await
    }
    .await
    .expect_err("the account requires TLS");
    let e = e.to_string();
    assert!(
        e.contains("Access denied") && e.contains("set backend_tls"),
        "{e}"
    );
}

/// A backend on a Unix socket gets TLS too: the server offers it there, and an account that
/// requires it is refused without it on a socket as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_on_a_unix_socket_is_reached_over_tls_too() {
    tls_accounts().await;
    let socket = format!("{}/primary/mysqld.sock", faults::DIR);
    let on_socket = |mode: &str| {
        let (socket, mode) = (socket.clone(), mode.to_string());
        faults::proxy_with(move |t| {
            t.replace(
                "name = \"app\"\npassword = \"app\"",
                "name = \"app_tls\"\npassword = \"app_tls\"",
            )
            .replace(
                "address = \"127.0.0.1:3306\"",
                &format!("address = \"{socket}\""),
            ) + &format!("\n[backend_tls]\nmode = \"{mode}\"\n")
        })
    };
    let proxy = on_socket("required");
    let mut c = mysql_async::Conn::new(as_user(&proxy, "app_tls"))
        .await
        .expect("log in");
    let cipher: Option<(u64, String)> = c.query_first(WHERE_AND_CIPHER).await.expect("read");
    let (id, cipher) = cipher.expect("row");
    assert_eq!(id, 1);
    assert!(!cipher.is_empty(), "the socket connection is not TLS");
    let plain = on_socket("disabled");
    let e = async {
        let mut c = mysql_async::Conn::new(as_user(&plain, "app_tls")).await?;
        c.query_drop("START TRANSACTION").await?;
        c.query_drop("SELECT 1").await
    }
    .await
    .expect_err("the account requires TLS on the socket too");
    assert!(e.to_string().contains("set backend_tls"), "{e}");
}

/// A reload that turns TLS on is used from the next connection on, by the pools and by the
/// monitor, whose account requires TLS: the backends it could not log in to come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_backend_tls_on_for_pools_and_monitor() {
    tls_accounts().await;
    let text = |backend_tls: &str| {
        let t = std::fs::read_to_string(format!("{}/config/test.toml", repo_root()))
            .expect("read config/test.toml")
            .replace("listen = \"127.0.0.1:6034\"", "listen = \"127.0.0.1:0\"")
            .replace(
                "name = \"app\"\npassword = \"app\"",
                "name = \"app_tls\"\npassword = \"app_tls\"",
            )
            .replace(
                "user = \"rwsplit_monitor\"\npassword = \"monitor\"",
                "user = \"monitor_tls\"\npassword = \"monitor_tls\"",
            )
            .replace("127.0.0.1:3306", &format!("127.0.0.1:{}", faults::BASE))
            .replace("127.0.0.1:3307", &format!("127.0.0.1:{}", faults::BASE + 1))
            .replace("127.0.0.1:3308", &format!("127.0.0.1:{}", faults::BASE + 2));
        format!("{t}\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[backend_tls]\n{backend_tls}\n")
    };
    let path = std::env::temp_dir().join(format!("{}.toml", unique("btls_reload")));
    std::fs::write(&path, text("mode = \"disabled\"")).expect("write");
    let proxy = Proxy::start_with(|_| text("mode = \"disabled\""));
    proxy.shared.config_path.set(path.clone()).expect("path");
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the monitor logged in without TLS",
        async || match backends_up(&proxy).await {
            up if up.iter().all(|u| !u) => Ok(()),
            up => Err(format!("{up:?}")),
        },
    )
    .await;
    std::fs::write(&path, text("mode = \"required\"")).expect("write");
    rwsplit::reload::reload_file(&proxy.shared)
        .await
        .expect("reload");
    proxy.replica_ready().await;
    let mut c = mysql_async::Conn::new(as_user(&proxy, "app_tls"))
        .await
        .expect("log in");
    assert!(!read_on_a_replica_and_cipher(&mut c).await.is_empty());
    let _ = std::fs::remove_file(&path);
}

/// Idle pooled connections the server closed (a restart, `wait_timeout`, a KILL) are dropped
/// within a few seconds, with or without TLS: before, they counted as idle in `/backends` and
/// held their places under `max_connections` until a checkout met them, in a pool no session
/// used any more for as long as its idle timeout (found by the backend TLS tester).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_the_server_closed_leave_the_pool() {
    tls_accounts().await;
    for mode in ["disabled", "required"] {
        let (proxy, user) = match mode {
            "required" => (
                tls_proxy("app_tls", "mode = \"required\"", false),
                "app_tls",
            ),
            _ => (faults::proxy(), "app"),
        };
        let mut sessions = Vec::new();
        let mut threads = Vec::new();
        // Four transactions at once: four connections of the primary's pool.
        for _ in 0..4 {
            let mut c = mysql_async::Conn::new(as_user(&proxy, user))
                .await
                .expect("log in");
            c.query_drop("BEGIN").await.expect("begin");
            threads.push(primary_thread(&mut c).await);
            sessions.push(c);
        }
        for c in &mut sessions {
            c.query_drop("COMMIT").await.expect("commit");
        }
        let idle = async || {
            let (_, body) = proxy.admin_get("/backends", None).await;
            let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            list[0]["pool"]["idle"].as_u64().unwrap_or(u64::MAX)
        };
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            "the four connections went back idle",
            async || match idle().await {
                4 => Ok(()),
                n => Err(format!("{mode}: {n} idle")),
            },
        )
        .await;
        for t in threads {
            kill_thread(faults::BASE, t).await;
        }
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(100),
            "the closed connections left the pool",
            async || match idle().await {
                0 => Ok(()),
                n => Err(format!("{mode}: {n} idle")),
            },
        )
        .await;
    }
}

/// An idle pooled TLS connection the server closed is not lent again: over TLS the check of an
/// idle connection reads through the TLS layer instead of asking the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_the_server_closed_is_not_lent_again() {
    tls_accounts().await;
    let proxy = tls_proxy("app_tls", "mode = \"required\"", false);
    let mut c = mysql_async::Conn::new(as_user(&proxy, "app_tls"))
        .await
        .expect("log in");
    closed_primary_connection_is_not_lent_again(&mut c, faults::BASE).await;
}
