//! Real client libraries other than Rust's, through rwsplit. Each runs a script
//! that exits non-zero on any mismatch; `scripts/test.sh` installs them.

mod common;

use common::*;

/// Runs `program script HOST PORT PREFIX` against a fresh proxy and fails with
/// the script's output when it does.
fn run_client_script(program: &str, script: &str, prefix: &str) {
    let proxy = Proxy::start();
    let script = format!("{}/tests/clients/{script}", repo_root());
    let out = std::process::Command::new(program)
        .args([
            &script,
            &proxy.addr.ip().to_string(),
            &proxy.addr.port().to_string(),
            &unique(prefix),
        ])
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
