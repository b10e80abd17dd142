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
    let out = std::process::Command::new(program)
        .args(before)
        .args([
            &script,
            &proxy.addr.ip().to_string(),
            &proxy.addr.port().to_string(),
            &unique(prefix),
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
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
