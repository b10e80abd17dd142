//! Real client libraries other than Rust's, through rwsplit. Each runs a script
//! that exits non-zero on any mismatch; `scripts/test.sh` installs them.

mod common;

use common::*;

/// Runs `program script HOST PORT PREFIX` against a fresh proxy and fails with
/// the script's output when it does.
fn run_client_script(program: &str, script: &str, prefix: &str) {
    run_client(program, &[], &[], script, prefix);
}

/// Runs `program [before...] script HOST PORT PREFIX`, with `env` added, against a fresh proxy
/// and fails with the program's output when it does.
fn run_client(program: &str, before: &[&str], env: &[(&str, &str)], script: &str, prefix: &str) {
    let proxy = Proxy::start();
    let script = format!("{}/tests/clients/{script}", repo_root());
    succeeds(
        std::process::Command::new(program)
            .args(before)
            .args([
                &script,
                &proxy.addr.ip().to_string(),
                &proxy.addr.port().to_string(),
                &unique(prefix),
            ])
            .envs(env.iter().copied()),
        &script,
    );
}

/// Runs `cmd` (`what`, for the messages) and fails with its output unless it succeeds.
fn succeeds(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pymysql_runs_queries_transactions_and_load_data_through_the_proxy() {
    run_client_script("python3", "pymysql_client.py", "py");
}

#[test]
fn node_mysql2_runs_prepared_statements_and_transactions_through_the_proxy() {
    run_client_script("node", "node/mysql2_client.js", "node");
}

#[test]
fn mysqlclient_runs_queries_warnings_procedures_and_select_db_through_the_proxy() {
    // Debian's python3-mysqldb is built for the system interpreter.
    run_client_script("/usr/bin/python3", "mysqlclient_client.py", "mc");
}

#[test]
fn go_sql_driver_runs_prepared_statements_transactions_and_cancels_through_the_proxy() {
    // GOPATH mode: the driver is Debian's golang-github-go-sql-driver-mysql-dev source.
    run_client(
        "go",
        &["run"],
        &[("GO111MODULE", "off"), ("GOPATH", "/usr/share/gocode")],
        "go/gosql_client.go",
        "go",
    );
}

#[test]
fn jdbc_runs_prepared_statements_batches_and_transactions_through_the_proxy() {
    // Debian's libmariadb-java: MariaDB Connector/J.
    run_client(
        "java",
        &["-cp", "/usr/share/java/mariadb-java-client.jar"],
        &[],
        "java/JdbcClient.java",
        "jdbc",
    );
}

/// `mariadb` against `proxy` (`tls`: with --ssl and the test certificate as CA, else
/// --skip-ssl): (success, stdout, stderr).
fn mariadb_cli(proxy: &Proxy, tls: Option<&str>, sql: &str) -> (bool, String, String) {
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args(["-h", &proxy.addr.ip().to_string()])
        .args(["-P", &proxy.addr.port().to_string()])
        .args(["-uapp", "-papp", "-N", "--local-infile=1", "app"]);
    match tls {
        Some(ca) => cmd.args(["--ssl", "--ssl-ca", ca]),
        None => cmd.arg("--skip-ssl"),
    };
    let out = cmd.args(["-e", sql]).output().expect("run mariadb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// With `proxy.tls_cert` and `tls_key`, clients that ask for TLS get it (mariadb's command-line
/// client, verifying the certificate, and PyMySQL): logins, a 10 MB result, LOAD DATA LOCAL
/// and a multi-statement go over it. Clients that do not ask are still served, unless
/// `tls_required`, which refuses them with the server's 3159.
#[test]
fn clients_that_ask_for_tls_get_it_and_tls_required_refuses_the_others() {
    let (cert, key) = self_signed();
    let with_tls = |required: bool| {
        let (cert, key) = (cert.clone(), key.clone());
        move |t: String| {
            t.replace(
                "handshake_timeout = \"5s\"",
                &format!(
                    "handshake_timeout = \"5s\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
                     tls_required = {required}"
                ),
            )
        }
    };
    let proxy = Proxy::start_with(with_tls(false));
    let (ok, out, err) = mariadb_cli(&proxy, Some(&cert), "\\s");
    assert!(ok && out.contains("Cipher in use is"), "{out}\n{err}");
    let (ok, out, err) = mariadb_cli(&proxy, Some(&cert), "SELECT REPEAT('ab', 5000000)");
    assert!(ok, "{err}");
    assert_eq!(out.trim_end().len(), 10_000_000);
    let t = unique("tls_load");
    let file = std::env::temp_dir().join(format!("{t}.csv"));
    std::fs::write(&file, "1\n2\n3\n").expect("file");
    let sql = format!(
        "CREATE TABLE {t} (v INT); LOAD DATA LOCAL INFILE '{}' INTO TABLE {t}; \
         SELECT /* rwsplit:primary */ SUM(v) FROM {t}; DROP TABLE {t}",
        file.display()
    );
    let (ok, out, err) = mariadb_cli(&proxy, Some(&cert), &sql);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "6");
    // Without TLS, as before.
    let (ok, out, err) = mariadb_cli(&proxy, None, "SELECT 'plain'");
    assert!(ok && out.trim() == "plain", "{out}\n{err}");
    // PyMySQL, verifying the certificate against its CA.
    let script = r#"
import pymysql, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = pymysql.connect(host=host, port=port, user="app", password="app", database="app",
                    ssl={"ca": ca, "check_hostname": False})
assert isinstance(c._sock, ssl.SSLSocket), type(c._sock)
cur = c.cursor()
cur.execute("SELECT REPEAT('xy', 3000000), 7")
row = cur.fetchone()
assert len(row[0]) == 6000000 and row[1] == 7, (len(row[0]), row[1])
cur.execute("SELECT @@version_comment")
print("ok", cur.fetchone()[0])
"#;
    let (host, port) = (proxy.addr.ip().to_string(), proxy.addr.port().to_string());
    succeeds(
        std::process::Command::new("python3").args(["-c", script, &host, &port, &cert]),
        "the PyMySQL TLS script",
    );
    // The SSL request and the ClientHello in one write.
    let one_write = format!("{}/tests/clients/tls_one_write.py", repo_root());
    succeeds(
        std::process::Command::new("python3").args([&one_write, &host, &port, &cert]),
        &one_write,
    );
    // TLS required: plain clients get 3159, TLS clients get in.
    let required = Proxy::start_with(with_tls(true));
    let (ok, out, err) = mariadb_cli(&required, None, "SELECT 1");
    assert!(!ok && err.contains("3159"), "{out}\n{err}");
    let (ok, out, err) = mariadb_cli(&required, Some(&cert), "SELECT 'secure'");
    assert!(ok && out.trim() == "secure", "{out}\n{err}");
}
