use super::*;
use PrimaryReason as R;
use StatementKind as K;

fn kind_reason(sql: &str) -> (K, Option<R>) {
    let c = classify(sql.as_bytes());
    (c.kind, c.reason)
}

type Row = (&'static str, K, Option<R>);

#[test]
fn statements_are_classified_as_the_table_says() {
    for (sql, kind, reason) in TABLE {
        assert_eq!(kind_reason(sql), (*kind, *reason), "{sql:?}");
    }
}

const TABLE: &[Row] = &[
    ("SELECT 1", K::Read, None),
    ("  select * from t where id = 5", K::Read, None),
    ("(SELECT 1) UNION (SELECT 2)", K::Read, None),
    ("SHOW TABLES", K::Read, None),
    ("DESCRIBE t", K::Read, None),
    ("EXPLAIN SELECT * FROM t", K::Read, None),
    ("WITH x AS (SELECT 1) SELECT * FROM x", K::Read, None),
    ("SELECT 'FOR UPDATE' FROM t", K::Read, None),
    ("SELECT `update` FROM t", K::Read, None),
    ("SELECT * FROM t WHERE c = 'a;b'", K::Read, None),
    ("SELECT 1;", K::Read, None),
    ("SELECT @@server_id", K::Read, None),
    ("SELECT @@session.sql_mode", K::Read, None),
    ("/* just a comment */ SELECT 1", K::Read, None),
    ("-- line comment\nSELECT 1", K::Read, None),
    ("# hash comment\nSELECT 1", K::Read, None),
    ("SELECT \"it's\" FROM t", K::Read, None),
    ("SELECT 'a\\'b' FROM t", K::Read, None),
    ("SELECT SLEEP(1)", K::Read, None),
    // The server's own functions, and keywords before a `(`, are no stored function's call.
    (
        "SELECT COUNT(*), SUM(k), CONCAT(a, 'x'), IFNULL(b, 0) FROM t",
        K::Read,
        None,
    ),
    (
        "SELECT c FROM t WHERE id IN (1, 2) AND (a OR NOT (b))",
        K::Read,
        None,
    ),
    (
        "SELECT CAST(a AS DECIMAL(10, 2)), CONVERT(b, CHAR(10)) FROM t",
        K::Read,
        None,
    ),
    (
        "SELECT CONVERT(b USING utf8mb4), BINARY (c) FROM t",
        K::Read,
        None,
    ),
    (
        "WITH c (a, b) AS (SELECT 1, 2) SELECT * FROM c",
        K::Read,
        None,
    ),
    (
        "WITH RECURSIVE c (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3) SELECT n FROM c",
        K::Read,
        None,
    ),
    ("SELECT * FROM (SELECT 1, 2) AS d (a, b)", K::Read, None),
    ("SELECT * FROM (SELECT 1, 2) d (a, b)", K::Read, None),
    ("SELECT * FROM (SELECT 1, 2) `d` (a, b)", K::Read, None),
    (
        "SELECT * FROM t FORCE INDEX (PRIMARY) JOIN u USING (id) WHERE t.id = 1",
        K::Read,
        None,
    ),
    (
        "SELECT * FROM t USE INDEX FOR ORDER BY (i) PARTITION (p0) ORDER BY (a)",
        K::Read,
        None,
    ),
    (
        "SELECT MATCH (a) AGAINST ('x' IN BOOLEAN MODE) FROM t",
        K::Read,
        None,
    ),
    (
        "SELECT IF(a, LEFT(b, 2), RIGHT(b, 2)), DATE(c), ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
        K::Read,
        None,
    ),
    (
        "SELECT a FROM t WHERE EXISTS (SELECT 1) OR a = ANY (SELECT 1) UNION (SELECT 2)",
        K::Read,
        None,
    ),
    (
        "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (i FOR ORDINALITY, v VARCHAR(10) PATH '$')) AS j",
        K::Read,
        None,
    ),
    (
        "SELECT GROUP_CONCAT(DISTINCT (a) ORDER BY b SEPARATOR ','), st_astext(ST_GeomFromText('POINT(1 1)')) FROM t",
        K::Read,
        None,
    ),
    ("SELECT a DIV (2), a MOD (3) FROM t", K::Read, None),
    // Stored and loadable functions may write.
    ("SELECT my_func(1)", K::Write, Some(R::StoredFunction)),
    (
        "SELECT a FROM t WHERE b = price_of (a)",
        K::Write,
        Some(R::StoredFunction),
    ),
    ("SELECT app.concat('a')", K::Write, Some(R::StoredFunction)),
    ("SELECT `app`.`f`()", K::Write, Some(R::StoredFunction)),
    ("SELECT `f`(1) FROM t", K::Write, Some(R::StoredFunction)),
    (
        "WITH c AS (SELECT f(1)) SELECT * FROM c",
        K::Write,
        Some(R::StoredFunction),
    ),
    ("SHOW TABLES WHERE f(1)", K::Write, Some(R::StoredFunction)),
    (
        "SELECT REPLACE(a, 'x', 'y'), f(a) FROM t",
        K::Write,
        Some(R::StoredFunction),
    ),
    (
        "SELECT f(1), GET_LOCK('l', 1)",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    ("SELECT f(@a)", K::Write, Some(R::UserVariable)),
    (
        "SELECT f(1) FROM t FOR UPDATE",
        K::Write,
        Some(R::LockingRead),
    ),
    ("/* rwsplit:replica */ SELECT f(1)", K::Read, None),
    ("SELECT f(1) /* rwsplit:replica */", K::Read, None),
    (
        "/* rwsplit:replica */ SELECT f(@a)",
        K::Write,
        Some(R::UserVariable),
    ),
    (
        "SELECT s.nextval FROM dual",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    (
        "SELECT app.s.CURRVAL",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    ("SELECT nextval FROM t", K::Read, None),
    // A name may begin with digits; a number ends where the server ends it.
    ("SELECT 2fa_check(5)", K::Write, Some(R::StoredFunction)),
    ("SELECT 2db.f(6)", K::Write, Some(R::StoredFunction)),
    (
        "SELECT 1.INTO OUTFILE '/tmp/x'",
        K::Write,
        Some(R::SelectInto),
    ),
    (
        "SELECT * FROM t WHERE id = 1.LOCK IN SHARE MODE",
        K::Write,
        Some(R::LockingRead),
    ),
    ("SELECT 1e5, 0x1F, 2.5 FROM t1", K::Read, None),
    // Values only the session's primary connection holds.
    ("SHOW SLAVE HOSTS", K::Write, Some(R::SessionValue)),
    ("SHOW REPLICAS", K::Write, Some(R::SessionValue)),
    (
        "SELECT BINLOG_GTID_POS('mysql-bin.000001', 4)",
        K::Write,
        Some(R::SessionValue),
    ),
    ("SELECT @@last_insert_id", K::Write, Some(R::SessionValue)),
    (
        "SELECT @@session.identity, @@LAST_GTID",
        K::Write,
        Some(R::SessionValue),
    ),
    (
        "SELECT @@insert_id, @@gtid_seq_no",
        K::Write,
        Some(R::SessionValue),
    ),
    ("SELECT @@`last_insert_id`", K::Write, Some(R::SessionValue)),
    (
        "SELECT @@global.sql_mode, @@session.warning_count",
        K::Read,
        None,
    ),
    ("SELECT @@gtid_binlog_pos", K::Write, Some(R::SessionValue)),
    (
        "SELECT @@GLOBAL.gtid_executed",
        K::Write,
        Some(R::SessionValue),
    ),
    (
        "SELECT @@global.gtid_slave_pos, @@global.last_insert_id",
        K::Read,
        None,
    ),
    ("SELECT * FROM t FOR UPDATE", K::Write, Some(R::LockingRead)),
    ("select * from t for share", K::Write, Some(R::LockingRead)),
    (
        "SELECT * FROM t LOCK IN SHARE MODE",
        K::Write,
        Some(R::LockingRead),
    ),
    ("SELECT a INTO @x FROM t", K::Write, Some(R::SelectInto)),
    (
        "SELECT a FROM t INTO OUTFILE '/tmp/x'",
        K::Write,
        Some(R::SelectInto),
    ),
    (
        "SELECT GET_LOCK('l', 1)",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    (
        "SELECT release_lock('l')",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    (
        "SELECT LAST_INSERT_ID()",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    ("SELECT FOUND_ROWS()", K::Write, Some(R::SideEffectFunction)),
    ("SELECT ROW_COUNT()", K::Write, Some(R::SideEffectFunction)),
    (
        "SELECT NEXT VALUE FOR s",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    ("SELECT NEXTVAL(s)", K::Write, Some(R::SideEffectFunction)),
    (
        "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
        K::Write,
        Some(R::SideEffectFunction),
    ),
    ("SELECT @a", K::Write, Some(R::UserVariable)),
    ("SELECT @a := 1", K::Write, Some(R::UserVariable)),
    (
        "SELECT * FROM t WHERE id = @`x`",
        K::Write,
        Some(R::UserVariable),
    ),
    (
        "WITH x AS (SELECT 1) UPDATE t SET a = 1",
        K::Write,
        Some(R::Dml),
    ),
    ("SELECT 1; SELECT 2", K::Write, Some(R::MultiStatement)),
    (
        "INSERT INTO t VALUES (1); SELECT 1",
        K::Write,
        Some(R::MultiStatement),
    ),
    ("INSERT INTO t VALUES (1)", K::Write, Some(R::Dml)),
    ("update t set a = 1", K::Write, Some(R::Dml)),
    ("DELETE FROM t", K::Write, Some(R::Dml)),
    ("REPLACE INTO t VALUES (1)", K::Write, Some(R::Dml)),
    (
        "LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
        K::Write,
        Some(R::Dml),
    ),
    ("CREATE TABLE t (i INT)", K::Write, Some(R::Ddl)),
    ("CREATE TEMPORARY TABLE t (i INT)", K::Write, Some(R::Ddl)),
    ("DROP TEMPORARY TABLE IF EXISTS t", K::Write, Some(R::Ddl)),
    ("ANALYZE TABLE t", K::Write, Some(R::Ddl)),
    ("ANALYZE NO_WRITE_TO_BINLOG TABLE t", K::Write, Some(R::Ddl)),
    ("ANALYZE SELECT * FROM t", K::Write, Some(R::Other)),
    ("ANALYZE UPDATE t SET a = 1", K::Write, Some(R::Other)),
    ("XA COMMIT 'x'", K::Write, Some(R::Other)),
    ("XA END 'x'", K::Write, Some(R::Other)),
    ("ALTER TABLE t ADD c INT", K::Write, Some(R::Ddl)),
    ("DROP TABLE t", K::Write, Some(R::Ddl)),
    ("TRUNCATE t", K::Write, Some(R::Ddl)),
    ("GRANT SELECT ON *.* TO x", K::Write, Some(R::Ddl)),
    ("CALL p(1)", K::Write, Some(R::Call)),
    ("LOCK TABLES t WRITE", K::Write, Some(R::TableLock)),
    ("UNLOCK TABLES", K::Write, Some(R::TableLock)),
    ("FLUSH TABLES WITH READ LOCK", K::Write, Some(R::TableLock)),
    ("PREPARE s FROM 'SELECT 1'", K::Write, Some(R::SqlPrepare)),
    ("EXECUTE s", K::Write, Some(R::SqlPrepare)),
    ("DEALLOCATE PREPARE s", K::Write, Some(R::SqlPrepare)),
    ("DROP PREPARE s", K::Write, Some(R::SqlPrepare)),
    ("SAVEPOINT a", K::Write, Some(R::TransactionControl)),
    (
        "ROLLBACK TO SAVEPOINT a",
        K::Write,
        Some(R::TransactionControl),
    ),
    ("RELEASE SAVEPOINT a", K::Write, Some(R::TransactionControl)),
    ("COMMIT AND CHAIN", K::Write, Some(R::TransactionControl)),
    ("COMMIT AND NO CHAIN", K::TransactionEnd, None),
    ("COMMIT AND NO CHAIN NO RELEASE", K::TransactionEnd, None),
    (
        "COMMIT WORK AND CHAIN NO RELEASE",
        K::Write,
        Some(R::TransactionControl),
    ),
    ("COMMIT RELEASE", K::TransactionEnd, None),
    ("ROLLBACK AND NO CHAIN RELEASE", K::TransactionEnd, None),
    (
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        K::Write,
        Some(R::TransactionControl),
    ),
    ("SET GLOBAL max_connections = 10", K::Write, Some(R::Other)),
    (
        "SET @@global.max_connections = 10",
        K::Write,
        Some(R::Other),
    ),
    ("SET PASSWORD = PASSWORD('x')", K::Write, Some(R::Other)),
    ("SET @a = 1", K::Write, Some(R::UserVariable)),
    ("SET @a = 1, @b = 2", K::Write, Some(R::UserVariable)),
    ("SET NAMES utf8mb4", K::SessionCommand, None),
    ("SET CHARACTER SET utf8", K::SessionCommand, None),
    ("SET autocommit = 0", K::SessionCommand, None),
    ("SET SESSION sql_mode = 'ANSI'", K::SessionCommand, None),
    (
        "SET @@session.time_zone = '+00:00'",
        K::SessionCommand,
        None,
    ),
    (
        "SET sql_mode = CONCAT(@@sql_mode, ',ANSI')",
        K::SessionCommand,
        None,
    ),
    (
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        K::SessionCommand,
        None,
    ),
    ("SET @a = 1, sql_mode = ''", K::SessionCommand, None),
    (
        "SET sql_mode = REPLACE(@@sql_mode, 'ANSI_QUOTES', '')",
        K::SessionCommand,
        None,
    ),
    // A value that calls a stored function runs once, on the primary (a session command
    // hinted there, logged by the value reported); one taking a lock or a sequence's value,
    // or several targets, keep the session there (`SessionEffect::Several`).
    (
        "SET time_zone = app.user_tz(42)",
        K::SessionCommand,
        Some(R::StoredFunction),
    ),
    (
        "SET time_zone = user_tz(42)",
        K::SessionCommand,
        Some(R::StoredFunction),
    ),
    // A one-shot variable's SET runs on the primary and is never replayed anyway.
    ("SET insert_id = next_id()", K::SessionCommand, None),
    (
        "SET @@session.max_join_size = (SELECT NEXTVAL(s))",
        K::Write,
        Some(R::StoredFunction),
    ),
    (
        "SET lock_wait_timeout = NEXT VALUE FOR s",
        K::Write,
        Some(R::StoredFunction),
    ),
    (
        "SET sql_mode = 'ANSI', time_zone = `tz_of`(1)",
        K::Write,
        Some(R::StoredFunction),
    ),
    // Only user variables: where they live (the primary), as before.
    (
        "SET @id = LAST_INSERT_ID()",
        K::Write,
        Some(R::UserVariable),
    ),
    (
        "SET @l = GET_LOCK('job', 0)",
        K::Write,
        Some(R::UserVariable),
    ),
    ("USE app", K::Use, None),
    ("use `my db`", K::Use, None),
    ("BEGIN", K::TransactionBegin, None),
    ("BEGIN WORK", K::TransactionBegin, None),
    ("START TRANSACTION", K::TransactionBegin, None),
    ("START TRANSACTION READ ONLY", K::TransactionBegin, None),
    (
        "XA START 'x'",
        K::TransactionBegin,
        Some(R::TransactionControl),
    ),
    ("COMMIT", K::TransactionEnd, None),
    ("ROLLBACK", K::TransactionEnd, None),
    ("COMMIT WORK", K::TransactionEnd, None),
    ("KILL 5", K::Kill, None),
    ("KILL QUERY 5", K::Kill, None),
    ("", K::Write, Some(R::Other)),
    ("   ", K::Write, Some(R::Other)),
    ("garbage words", K::Write, Some(R::Other)),
    ("DO SLEEP(1)", K::Write, Some(R::Other)),
    ("HANDLER t OPEN", K::Write, Some(R::Other)),
    ("/*!40101 SET NAMES utf8 */", K::SessionCommand, None),
    ("/*M!100100 SELECT 1 */", K::Read, None),
    // String functions named like DML: the full-parse fallback tells them from writes.
    ("SELECT REPLACE(name, 'a', 'b') FROM t", K::Read, None),
    ("SELECT INSERT('abcd', 2, 1, 'x') AS s", K::Read, None),
    (
        "SELECT replace(a, 'x', 'y') FROM t WHERE id = 1 UNION SELECT b FROM u",
        K::Read,
        None,
    ),
    (
        "SELECT REPLACE(a, 'x', 'y') FROM t FOR UPDATE",
        K::Write,
        Some(R::LockingRead),
    ),
    (
        "SELECT REPLACE(a, 'x', 'y') INTO @v FROM t",
        K::Write,
        Some(R::SelectInto),
    ),
    (
        "SELECT REPLACE(a, 'x', 'y') FROM t LOCK IN SHARE MODE",
        K::Write,
        Some(R::LockingRead),
    ),
    (
        "WITH x AS (SELECT 1) UPDATE t SET a = 1",
        K::Write,
        Some(R::Dml),
    ),
];

#[test]
fn the_function_and_keyword_lists_are_sorted_uppercase_and_apart() {
    use functions::{COMMON, KEYWORDS, LONGEST, MARIADB, MYSQL};
    for list in [COMMON, MARIADB, MYSQL, KEYWORDS] {
        for pair in list.windows(2) {
            assert!(
                pair[0].as_bytes() < pair[1].as_bytes(),
                "{pair:?} out of order"
            );
        }
        for name in list {
            assert!(
                name.len() <= LONGEST,
                "{name} is longer than the lookup takes"
            );
            assert_eq!(*name, name.to_ascii_uppercase(), "{name} is not uppercase");
        }
    }
    let lists = [COMMON, MARIADB, MYSQL, KEYWORDS];
    for (i, a) in lists.iter().enumerate() {
        for b in &lists[i + 1..] {
            for name in *a {
                assert!(!b.contains(name), "{name} is in two lists");
            }
        }
    }
    assert!(functions::is_servers(b"st_astext", None) && functions::is_servers(b"In", None));
    assert!(!functions::is_servers(b"price_of", Some(Flavor::MariaDb)));
    assert!(!functions::is_servers(&[b'A'; 41], None));
}

#[test]
fn reads_of_the_last_statements_diagnostics_are_marked() {
    for (sql, want) in [
        ("SHOW WARNINGS", true),
        ("show errors limit 1", true),
        ("SHOW COUNT(*) WARNINGS", true),
        ("SELECT @@warning_count", true),
        ("SELECT @@session.error_count + 0", true),
        ("SELECT 1", false),
        ("SHOW TABLES", false),
        ("SELECT 'WARNINGS'", false),
        ("SELECT warnings FROM t", false),
        ("SHOW VARIABLES LIKE 'warnings'", false),
        ("SELECT @@max_error_count", false),
    ] {
        assert_eq!(classify(sql.as_bytes()).diagnostics, want, "{sql}");
    }
}

#[test]
fn what_comes_past_the_tokens_looked_at_sends_a_read_to_the_primary() {
    let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    // Each value and its comma are two tokens.
    let short = format!("SELECT * FROM t WHERE id IN ({})", list(4000));
    assert_eq!(kind_reason(&short), (K::Read, None));
    for tail in ["", " FOR UPDATE", "; DELETE FROM t", " AND app.f(1)"] {
        let long = format!("SELECT * FROM t WHERE id IN ({}){tail}", list(9000));
        assert_eq!(
            kind_reason(&long),
            (K::Write, Some(R::Other)),
            "tail {tail:?}"
        );
        let mut digest = Vec::new();
        let c = classify_digest(long.as_bytes(), &mut digest, Dialect::default());
        assert_eq!(
            (c.kind, c.reason),
            (K::Write, Some(R::Other)),
            "tail {tail:?}"
        );
    }
}

#[test]
fn each_server_family_knows_its_own_functions_by_name() {
    // (statement, a read on MariaDB, on MySQL, with the family not known yet)
    for (sql, mariadb, mysql, unknown) in [
        (
            "SELECT CONCAT(a, 'x'), ST_AsText(g), IF(b, 1, 2) FROM t",
            true,
            true,
            true,
        ),
        (
            "SELECT UUID_TO_BIN(UUID()), ANY_VALUE(a), REGEXP_LIKE(b, 'x') FROM t",
            false,
            true,
            false,
        ),
        (
            "SELECT NVL(a, 0), CHR(65), COLUMN_GET(d, 'a' AS CHAR) FROM t",
            true,
            false,
            false,
        ),
        ("SELECT ASTEXT(g), X(g) FROM t", true, false, false),
        // Later versions' own: a stored function's on 10.11, so the primary for all.
        (
            "SELECT UUID_V7(), VEC_DISTANCE(a, b) FROM t",
            false,
            false,
            false,
        ),
        // Non-reserved words a stored function may be named by, unless their syntax says not.
        ("SELECT against(1), columns(2), of(3)", false, false, false),
        (
            "SELECT a FROM t WHERE MATCH (a) AGAINST ('x') AND JSON_CONTAINS(j, '1')",
            true,
            true,
            true,
        ),
        ("SELECT 1 MEMBER OF ('[1]')", true, true, true),
    ] {
        let read = |c: Classification| c.kind == K::Read;
        assert_eq!(
            read(classify_for(sql.as_bytes(), Flavor::MariaDb)),
            mariadb,
            "MariaDB: {sql}"
        );
        assert_eq!(
            read(classify_for(sql.as_bytes(), Flavor::MySql)),
            mysql,
            "MySQL: {sql}"
        );
        assert_eq!(read(classify(sql.as_bytes())), unknown, "unknown: {sql}");
    }
}

#[test]
fn with_no_backslash_escapes_a_backslash_escapes_nothing() {
    let nbe = Dialect {
        no_backslash_escapes: true,
        ..Dialect::default()
    };
    let mut digest = Vec::new();
    // (statement, kind and reason by default, with NO_BACKSLASH_ESCAPES)
    for (sql, default, no_escapes) in [
        (
            r"SELECT id FROM t WHERE dir = 'C:\' FOR UPDATE",
            (K::Read, None),
            (K::Write, Some(R::LockingRead)),
        ),
        (
            r"SELECT 'a\'; INSERT INTO log VALUES (42); -- '",
            (K::Read, None),
            (K::Write, Some(R::MultiStatement)),
        ),
        (
            r"SELECT 'it''s \n' FROM t",
            (K::Read, None),
            (K::Read, None),
        ),
        // sqlparser, which reads backslashes as escapes, does not decide then (by default the
        // string never ends, and sqlparser cannot parse it either).
        (
            r"SELECT REPLACE(a, '\', 'x') FROM t",
            (K::Write, Some(R::Dml)),
            (K::Write, Some(R::Other)),
        ),
    ] {
        assert_eq!(kind_reason(sql), default, "{sql}");
        let c = classify_digest(sql.as_bytes(), &mut digest, nbe);
        assert_eq!((c.kind, c.reason), no_escapes, "{sql}");
    }
}

#[test]
fn set_statement_classifies_its_statement() {
    use SessionEffect as E;
    for (sql, kind, reason, effect) in [
        (
            "SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t",
            K::Read,
            None,
            None,
        ),
        (
            "set statement sql_mode = '', x = (1) for INSERT INTO t VALUES (1)",
            K::Write,
            Some(R::Dml),
            None,
        ),
        (
            "SET STATEMENT a = 1 FOR SELECT * FROM t FOR UPDATE",
            K::Write,
            Some(R::LockingRead),
            None,
        ),
        (
            "SET STATEMENT a = 1 FOR CREATE TEMPORARY TABLE t (i INT)",
            K::Write,
            Some(R::Ddl),
            Some(E::CreatesTemporaryTable),
        ),
    ] {
        let c = classify(sql.as_bytes());
        assert_eq!(
            (c.kind, c.reason, c.effect, c.scoped_set),
            (kind, reason, effect, true),
            "{sql}"
        );
    }
    for sql in ["SET STATEMENT a = 1", "SET STATEMENT a = 1 FOR SET b = 2"] {
        let c = classify(sql.as_bytes());
        assert_eq!(
            (c.kind, c.reason, c.scoped_set),
            (K::Write, Some(R::Other), false),
            "{sql}"
        );
    }
}

#[test]
fn only_dml_named_functions_take_the_full_parse() {
    assert!(!classify(b"SELECT REPLACE(name, 'a', 'b') FROM t").fast_path);
    assert!(!classify(b"SELECT INSERT('abcd', 2, 1, 'x')").fast_path);
    for sql in [
        "SELECT a FROM t WHERE id = 7",
        "INSERT INTO t VALUES (1)",
        "REPLACE INTO t VALUES (1)",
    ] {
        assert!(classify(sql.as_bytes()).fast_path, "{sql}");
    }
}

/// sqlparser as a cross-check of the lexical pass: wherever it parses a table row, it must not
/// call plain a statement the table sends to the primary for a lock, an INTO or a write, nor
/// call a write what the table reads on a replica.
#[test]
fn the_full_parser_agrees_with_the_table_where_it_parses() {
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;
    let mut checked = 0;
    for (sql, kind, reason) in TABLE {
        let Ok(stmts) = Parser::parse_sql(&MySqlDialect {}, sql) else {
            continue;
        };
        let is_query = matches!(stmts.as_slice(), [sqlparser::ast::Statement::Query(_)]);
        let plain = fallback::parse_is_plain_query(sql);
        match (kind, reason) {
            (K::Read, _) if is_query => {
                assert!(plain, "lexical pass says read, sqlparser disagrees: {sql}");
                checked += 1;
            }
            (K::Write, Some(R::LockingRead | R::SelectInto | R::Dml)) => {
                assert!(
                    !plain,
                    "lexical pass says primary, sqlparser says plain: {sql}"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 25, "only {checked} rows cross-checked");
}

#[test]
fn effects_are_reported() {
    use SessionEffect as E;
    let table: &[(&str, Option<E>)] = &[
        (
            "CREATE TEMPORARY TABLE t (i INT)",
            Some(E::CreatesTemporaryTable),
        ),
        (
            "CREATE OR REPLACE TEMPORARY TABLE t (i INT)",
            Some(E::CreatesTemporaryTable),
        ),
        ("CREATE OR REPLACE TABLE t (i INT)", None),
        ("DROP TEMPORARY TABLE t", Some(E::DropsTemporaryTable)),
        ("DROP TABLE t", None),
        ("LOCK TABLES t READ", Some(E::LocksTables)),
        ("UNLOCK TABLES", Some(E::UnlocksTables)),
        ("SET @a = 1", Some(E::SetsUserVariable)),
        ("SELECT @a := 1", Some(E::SetsUserVariable)),
        ("SELECT 1 INTO @a", Some(E::SetsUserVariable)),
        ("SELECT GET_LOCK('x', 1)", Some(E::TakesNamedLock)),
        ("PREPARE s FROM 'SELECT 1'", Some(E::PreparesSqlStatement)),
        ("SET TRANSACTION READ ONLY", Some(E::SetsNextTransaction)),
        ("SET SESSION TRANSACTION READ ONLY", None),
        ("SELECT 1", None),
        ("CREATE TABLE t (i INT)", None),
        ("FLUSH TABLES t1, t2 FOR EXPORT", Some(E::LocksTables)),
        ("FLUSH TABLES WITH READ LOCK", Some(E::LocksTables)),
        ("FLUSH TABLES", None),
        ("BACKUP STAGE START", Some(E::BackupStage { ends: false })),
        (
            "backup stage block_commit",
            Some(E::BackupStage { ends: false }),
        ),
        ("BACKUP STAGE END", Some(E::BackupStage { ends: true })),
        ("BACKUP LOCK db.t", Some(E::BackupLock { releases: false })),
        ("BACKUP UNLOCK", Some(E::BackupLock { releases: true })),
        (
            "LOCK INSTANCE FOR BACKUP",
            Some(E::BackupLock { releases: false }),
        ),
        ("UNLOCK INSTANCE", Some(E::BackupLock { releases: true })),
        ("SET insert_id = 1000", Some(E::SetsOneShotVariable)),
        (
            "SET @@session.RAND_SEED1 = 1, rand_seed2 = 2",
            Some(E::SetsOneShotVariable),
        ),
        (
            "SET SESSION last_insert_id = 5",
            Some(E::SetsOneShotVariable),
        ),
        (
            "SET sql_mode = '', gtid_seq_no = 7",
            Some(E::SetsOneShotVariable),
        ),
        ("SET sql_mode = ''", None),
        ("COMMIT RELEASE", Some(E::EndsConnection)),
        (
            "ROLLBACK WORK AND NO CHAIN RELEASE",
            Some(E::EndsConnection),
        ),
        ("COMMIT NO RELEASE", None),
        ("COMMIT", None),
        ("SET time_zone = user_tz(42)", None),
        ("SET insert_id = next_id()", Some(E::SetsOneShotVariable)),
        ("SET max_join_size = NEXTVAL(s)", Some(E::Several)),
        ("SELECT `get_lock`('l', 1)", Some(E::TakesNamedLock)),
        ("DO GET_LOCK('l', 1)", Some(E::TakesNamedLock)),
        ("DO RELEASE_LOCK('l')", Some(E::ReleasesNamedLock)),
        // Two effects: the one that keeps the connection longest.
        (
            "SELECT GET_LOCK('l', 1), @x := 5",
            Some(E::SetsUserVariable),
        ),
        (
            "SELECT @x := 5, GET_LOCK('l', 1)",
            Some(E::SetsUserVariable),
        ),
        (
            "SELECT GET_LOCK('l', 1), LAST_INSERT_ID(5)",
            Some(E::SetsLastInsertId),
        ),
        (
            "SELECT GET_LOCK('l', 1), RELEASE_LOCK('l')",
            Some(E::TakesNamedLock),
        ),
        (
            "SELECT NEXTVAL(s), GET_LOCK('l', 1)",
            Some(E::TakesNamedLock),
        ),
        ("SELECT NEXTVAL(s) INTO @x", Some(E::SetsUserVariable)),
        // A multi-statement: its statements' effects, one kept as for one statement.
        ("SELECT GET_LOCK('l', 1); SELECT 1", Some(E::TakesNamedLock)),
        ("LOCK TABLES t READ; SELECT * FROM t", Some(E::LocksTables)),
        ("SELECT 1; HANDLER t OPEN; SELECT 2", Some(E::OpensHandler)),
        ("SELECT 1; SELECT 2", None),
        (
            "SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)",
            Some(E::Several),
        ),
        // More than one: rwsplit counts one, so the session keeps its connections for good.
        ("LOCK TABLES t WRITE; DO GET_LOCK('a', 0)", Some(E::Several)),
        ("DO GET_LOCK('a', 0); DO GET_LOCK('b', 0)", Some(E::Several)),
        // An XA statement among them: the connection is closed at the end, whatever else.
        ("XA END 'x'; XA PREPARE 'x'", Some(E::Xa)),
        ("SELECT 1; XA START 'x'", Some(E::Xa)),
        ("DO GET_LOCK('a', 0); XA COMMIT 'x'", Some(E::Xa)),
        ("XA RECOVER", Some(E::Xa)),
        // A routine's body does not run when it is defined.
        (
            "CREATE PROCEDURE p() BEGIN SELECT GET_LOCK('l', 1); SET @x = 1; END",
            None,
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; SET @n = @n + 1; END",
            None,
        ),
        (
            "SELECT GET_LOCK('l', 1); CREATE PROCEDURE p() BEGIN SET @x = 1; END",
            Some(E::TakesNamedLock),
        ),
        ("DO @v := 42", Some(E::SetsUserVariable)),
        ("DO LAST_INSERT_ID(77)", Some(E::SetsLastInsertId)),
        ("DO 1", None),
        (
            "INSERT INTO t SELECT GET_LOCK('l', 1)",
            Some(E::TakesNamedLock),
        ),
        (
            "UPDATE t SET v = RELEASE_LOCK('l') WHERE id = 1",
            Some(E::ReleasesNamedLock),
        ),
        ("UPDATE t SET a = @v := a + 1", Some(E::SetsUserVariable)),
        (
            "INSERT INTO t VALUES (LAST_INSERT_ID(5))",
            Some(E::SetsLastInsertId),
        ),
        ("INSERT INTO t (a) VALUES (LAST_INSERT_ID()), (@v)", None),
        ("SELECT NEXTVAL(s)", Some(E::TakesSequenceValue)),
        ("SELECT NEXT VALUE FOR s", Some(E::TakesSequenceValue)),
        ("SELECT LASTVAL(s), PREVIOUS VALUE FOR s", None),
        ("HANDLER t OPEN", Some(E::OpensHandler)),
        ("handler app.close open AS h", Some(E::OpensHandler)),
        ("HANDLER `t` CLOSE", Some(E::ClosesHandler)),
        ("HANDLER t READ `PRIMARY` FIRST WHERE close = 1", None),
        ("HANDLER app.open READ NEXT", None),
        // SQL rwsplit does not see, run by the server: whatever it leaves, the session keeps.
        ("EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'", Some(E::Several)),
        (
            "EXECUTE IMMEDIATE 'DO GET_LOCK(?, 0)' USING 'job'",
            Some(E::Several),
        ),
        (
            "BEGIN NOT ATOMIC DO GET_LOCK('job', 0); END",
            Some(E::Several),
        ),
        ("IF 1 THEN DO GET_LOCK('job', 0); END IF", Some(E::Several)),
        (
            "FOR i IN 1..3 DO DO GET_LOCK('job', 0); END FOR",
            Some(E::Several),
        ),
        ("WHILE 0 DO SELECT 1; END WHILE", Some(E::Several)),
        ("lbl: LOOP LEAVE lbl; END LOOP", Some(E::Several)),
        // A table with a column named `begin` is no routine definition.
        (
            "CREATE TABLE t2 (begin INT); DO GET_LOCK('job', 0)",
            Some(E::TakesNamedLock),
        ),
    ];
    for (sql, effect) in table {
        assert_eq!(classify(sql.as_bytes()).effect, *effect, "{sql}");
    }
}

#[test]
fn hints_in_comments_are_found() {
    let table: &[(&str, Option<Hint>)] = &[
        ("/* rwsplit:primary */ SELECT 1", Some(Hint::Primary)),
        ("/*rwsplit:replica*/ SELECT 1", Some(Hint::Replica)),
        ("SELECT /* RWSPLIT:PRIMARY */ 1", Some(Hint::Primary)),
        ("-- rwsplit:primary\nSELECT 1", Some(Hint::Primary)),
        ("# rwsplit : replica\nSELECT 1", Some(Hint::Replica)),
        (
            "/* app=shop, rwsplit: replica */ SELECT 1",
            Some(Hint::Replica),
        ),
        ("/* do not use rwsplit:replicas here */ SELECT 1", None),
        ("/* myrwsplit:replica */ SELECT 1", None),
        ("/* rwsplit:replica_x */ SELECT 1", None),
        ("/* rwsplit:primary$ */ SELECT 1", None),
        ("/* $rwsplit:primary */ SELECT 1", None),
        ("/* \u{e9}rwsplit:primary */ SELECT 1", None),
        ("/* rwsplit */ SELECT 1 /* replica */", None),
        (
            "/* rwsplit:replica rwsplit:primary */ SELECT 1",
            Some(Hint::Primary),
        ),
        ("SELECT 'rwsplit:primary'", None),
        ("SELECT 1", None),
        // A SET calling a stored function is hinted to the primary by the classifier; a
        // comment's hint says more (`rwsplit:replica`: its functions only read).
        ("SET time_zone = tz_of(42)", Some(Hint::Primary)),
        (
            "/* rwsplit:replica */ SET time_zone = tz_of(42)",
            Some(Hint::Replica),
        ),
        ("SET time_zone = '+00:00'", None),
        // A versioned comment one server runs and another skips is read as SQL, which may be
        // wrong: the primary, whatever a hint says.
        (
            "/*!50700 SELECT 1 ON */ DELETE FROM t WHERE id = 3",
            Some(Hint::Primary),
        ),
        (
            "/*!99999 SELECT 1 FOR */ DELETE FROM t",
            Some(Hint::Primary),
        ),
        (
            "SELECT * FROM t WHERE id = 1 /*!99999 -- mysql 9 only */ FOR UPDATE",
            Some(Hint::Primary),
        ),
        (
            "/* rwsplit:replica */ SELECT * FROM t WHERE id=1 /*!50700 ' */ FOR UPDATE -- '",
            Some(Hint::Primary),
        ),
        ("SELECT 1 /*!100500 , 2 */", Some(Hint::Primary)),
        ("/*M! SELECT 1 */", Some(Hint::Primary)),
        // A backslash after a non-ASCII byte may be the second byte of an sjis, big5 or gbk
        // character, and the string end there.
        (
            "SELECT * FROM t WHERE name = '\u{8868}\\' FOR UPDATE",
            Some(Hint::Primary),
        ),
        ("SELECT 'a\\'b'", None),
        // Both servers run these.
        ("/*!40101 SELECT 1 */", None),
        ("SELECT 1 /*! , 2 */", None),
        ("/*!50699 SELECT 1 */", None),
    ];
    for (sql, hint) in table {
        assert_eq!(classify(sql.as_bytes()).hint, *hint, "{sql}");
    }
}

#[test]
fn start_transaction_read_only_is_marked() {
    assert!(classify(b"START TRANSACTION READ ONLY").read_only_transaction);
    assert!(!classify(b"START TRANSACTION READ WRITE").read_only_transaction);
}

#[test]
fn use_gives_the_unquoted_schema() {
    assert_eq!(classify(b"USE app").schema.as_deref(), Some("app"));
    assert_eq!(classify(b"USE `my db`").schema.as_deref(), Some("my db"));
    // The name after USE, not the first quote of the text.
    for (sql, want) in [
        ("/* see `legacy` */ USE `app2`", "app2"),
        ("/* tenant's schema */ USE `tenant_42`", "tenant_42"),
        ("-- \"switch\" db\nUSE `app2`", "app2"),
        ("USE `a``b`", "a`b"),
    ] {
        assert_eq!(
            classify(sql.as_bytes()).schema.as_deref(),
            Some(want),
            "{sql}"
        );
    }
}

#[test]
fn a_string_in_sjis_that_ends_in_byte_5c_does_not_hide_a_lock() {
    // '表' in sjis is 0x95 0x5c: the server's string ends at the next quote.
    let sql = b"SELECT * FROM t WHERE name = '\x95\x5c' FOR UPDATE";
    assert!(!route_free(sql));
    let sql = b"SELECT * FROM t WHERE name = '\x95\x5c'; DELETE FROM t WHERE id = 2; -- '";
    assert!(!route_free(sql));
    // Under ANSI_QUOTES "..." is a name: the backslash escapes nothing and the lock is real.
    assert!(!route_free(
        br#"SELECT id AS "dir\" FROM t WHERE id = 1 FOR UPDATE"#
    ));
    assert!(route_free(b"SELECT \"it's\" FROM t"));
}

/// Whether a statement may go to a replica (read, and no hint keeping it on the primary).
fn route_free(sql: &[u8]) -> bool {
    let c = classify(sql);
    c.may_read_a_replica() && c.hint != Some(Hint::Primary)
}

#[test]
fn what_only_the_primary_can_say_goes_there() {
    for sql in [
        "SHOW MASTER STATUS",
        "SHOW BINLOG STATUS",
        "SHOW BINARY LOGS",
        "SHOW PROCESSLIST",
        "SHOW FULL PROCESSLIST",
        "SHOW ENGINE INNODB STATUS",
        "SELECT @@read_only",
        "SELECT @@global.read_only, @@innodb_read_only",
        "SELECT @@session.`last_insert_id`",
        "SELECT @@SESSION . last_insert_id",
        "SELECT @@session/**/.last_insert_id",
        "SELECT @@GLOBAL . gtid_binlog_pos",
        "SHOW VARIABLES LIKE 'read_only'",
        "show global variables like 'gtid%'",
        "SHOW SESSION STATUS",
        "SHOW STATUS LIKE 'Threads%'",
        "SHOW USER_VARIABLES",
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'READ_ONLY'",
        "SELECT GLOBAL_VALUE FROM INFORMATION_SCHEMA.`SYSTEM_VARIABLES` WHERE 1",
        "SELECT * FROM information_schema.user_variables",
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST",
        "SELECT * FROM performance_schema.threads",
        "SELECT * FROM `performance_schema`.`global_variables`",
    ] {
        let c = classify(sql.as_bytes());
        assert!(!c.may_read_a_replica(), "{sql}: {c:?}");
    }
    for sql in [
        "SHOW TABLES",
        "SHOW SLAVE STATUS",
        "SHOW TABLE STATUS",
        "SELECT @@version",
        "SELECT * FROM threads",
        "SELECT processlist FROM app.jobs",
        "SELECT * FROM information_schema.TABLES",
    ] {
        assert!(classify(sql.as_bytes()).may_read_a_replica(), "{sql}");
    }
}

#[test]
fn the_servers_whitespace_and_dash_comments_hide_no_lock() {
    for sql in [
        "SELECT * FROM t WHERE id=1 LOCK\x0bIN SHARE MODE",
        "SELECT * FROM t WHERE id=1 --\x0b' \n FOR UPDATE -- '",
        "SELECT * FROM t WHERE id=1 --\x01' \n FOR UPDATE -- '",
    ] {
        let c = classify(sql.as_bytes());
        assert_eq!(c.kind, K::Write, "{sql:?}");
        assert_eq!(c.reason, Some(R::LockingRead), "{sql:?}");
    }
}

#[test]
fn digest_replaces_literals_and_folds_space() {
    assert_eq!(
        digest(b"SELECT  a, b FROM t WHERE id = 5 AND n = 'x' /* c */"),
        "SELECT a, b FROM t WHERE id = ? AND n = ?"
    );
    assert_eq!(digest(b"select f(1, 2)"), "select f(?, ?)");
    // Names stay, backticked or not; strings go.
    assert_eq!(
        digest(b"SELECT `a`, b FROM `app`.`t` WHERE `id` = 'x' AND `un``ended"),
        "SELECT `a`, b FROM `app` . `t` WHERE `id` = ? AND `un``ended`"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    // Letters and marks the lexer and the classifier turn on: keywords' letters, quotes,
    // comments, numbers (`0x`, `1e5`, `1.`), names before `(`, `SET STATEMENT ... FOR`, `DO`.
    let alphabet = b"SELECTFORUPDATEINTODOXHANDLERNEXTVAL@@'\\\"`;/*!-#\n ()0123456789,:=.xeb";
    let dialects = [
        Dialect::default(),
        Dialect {
            flavor: Some(Flavor::MariaDb),
            no_backslash_escapes: true,
        },
        Dialect {
            flavor: Some(Flavor::MySql),
            no_backslash_escapes: false,
        },
    ];
    let mut digest_buf = Vec::new();
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                let r = x.rotate_left(i as u32 * 7);
                if r.is_multiple_of(5) {
                    (r >> 8) as u8
                } else {
                    alphabet[(r % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        let _ = classify(&bytes);
        let _ = digest(&bytes);
        for d in dialects {
            let _ = classify_digest(&bytes, &mut digest_buf, d);
        }
    }
}

#[test]
fn sets_that_can_run_twice_are_marked_idempotent() {
    for (sql, want) in [
        ("SET NAMES utf8mb4", true),
        ("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", true),
        ("SET CHARACTER SET latin1", true),
        ("SET autocommit = 1", true),
        (
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'",
            true,
        ),
        ("SET @@SESSION.time_zone = '+00:00'", true),
        ("set session wait_timeout=28800", true),
        ("SET time_zone = SYSTEM", true),
        ("SET NAMES utf8mb4, time_zone = '+00:00'", true),
        // Reads state or calls a function: running it again may change the result.
        (
            "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
            false,
        ),
        ("SET @@SESSION.sql_mode = @@GLOBAL.sql_mode", false),
        ("SET max_join_size = @limit", false),
        ("SET timestamp = UNIX_TIMESTAMP()", false),
        ("SET timestamp = CURRENT_TIMESTAMP", false),
        (
            "SET NAMES utf8mb4, div_precision_increment = @@div_precision_increment + 1",
            false,
        ),
        // Not a plain session command at all.
        ("SET @a = 1", false),
        ("SET @a = 1, sql_mode = ''", false),
        ("SELECT 1", false),
        ("SET NAMES utf8mb4; DELETE FROM t", false),
    ] {
        assert_eq!(classify(sql.as_bytes()).idempotent, want, "{sql}");
    }
}

#[test]
fn reads_of_no_table_are_marked() {
    for (sql, want) in [
        ("SELECT @@max_allowed_packet, @@wait_timeout", true),
        ("SELECT @@max_allowed_packet,@@wait_timeout,@@socket", true),
        ("select 1", true),
        ("SELECT NOW(), CONNECTION_ID() + 0", true),
        ("VALUES (1, 2)", true),
        ("SELECT 'FROM'", true),
        ("SELECT 1 FROM DUAL", false),
        ("SELECT id FROM t", false),
        ("SELECT (SELECT MAX(id) FROM t)", false),
        ("SELECT 1 FOR UPDATE", false),
        ("SELECT @x", false),
        ("SHOW VARIABLES", false),
        ("WITH a AS (SELECT 1) SELECT * FROM a", false),
        ("INSERT INTO t VALUES (1)", false),
    ] {
        assert_eq!(classify(sql.as_bytes()).reads_no_table, want, "{sql}");
    }
}

#[test]
fn set_role_pins_and_set_persist_goes_to_the_primary() {
    use crate::classify::SessionEffect;
    assert_eq!(
        classify(b"SET ROLE app_reader").effect,
        Some(SessionEffect::SetsRole)
    );
    assert_eq!(kind_reason("SET ROLE NONE"), (K::Write, Some(R::Other)));
    for sql in [
        "SET PERSIST max_connections = 500",
        "SET PERSIST_ONLY max_connections = 500",
        "SET @@PERSIST.max_connections = 500",
        "SET @@GLOBAL.max_connections = 500",
    ] {
        assert_eq!(kind_reason(sql), (K::Write, Some(R::Other)), "{sql}");
    }
    // A user variable after SET NAMES still pins.
    assert_eq!(
        classify(b"SET NAMES latin1, @a = 1").effect,
        Some(SessionEffect::SetsUserVariable)
    );
}

#[test]
fn the_one_variable_a_set_assigns_is_found() {
    for (sql, want) in [
        (
            "SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
            Some("sql_mode"),
        ),
        (
            "SET SESSION div_precision_increment = @@div_precision_increment + 1",
            Some("div_precision_increment"),
        ),
        (
            "SET @@SESSION.Time_Zone = @@GLOBAL.time_zone",
            Some("time_zone"),
        ),
        ("set @@local.wait_timeout := 5", Some("wait_timeout")),
        ("SET @@sql_mode = ''", Some("sql_mode")),
        ("SET a = 1, b = 2", None),
        ("SET NAMES latin1", None),
        ("SET CHARACTER SET latin1", None),
        ("SET @a = 1", None),
        ("SET @@GLOBAL.sql_mode = ''", None),
        ("SET x.key_buffer_size = 1", None),
        ("SELECT 1", None),
    ] {
        assert_eq!(
            crate::classify::set_target(sql.as_bytes()).as_deref(),
            want,
            "{sql}"
        );
    }
    // Each variable has its own digest, so the log keeps one entry per variable.
    assert_ne!(
        digest(b"SET @@SESSION.sql_mode = 'ANSI'"),
        digest(b"SET @@SESSION.time_zone = '+00:00'")
    );
    assert_eq!(
        kind_reason("SET @@GLOBAL.sql_mode = ''"),
        (K::Write, Some(R::Other))
    );
}

#[test]
fn what_opens_a_table_is_told_from_the_text_where_it_can_be() {
    for (sql, opens) in [
        ("SELECT * FROM t", Some(true)),
        ("SELECT 1", Some(false)),
        ("SELECT @@warning_count", Some(false)),
        ("SET NAMES utf8mb4", Some(false)),
        ("USE app", Some(false)),
        ("BEGIN", Some(false)),
        ("COMMIT", Some(false)),
        ("INSERT INTO t VALUES (1)", Some(true)),
        ("CREATE TABLE t (a INT)", Some(true)),
        ("SELECT * FROM t FOR UPDATE", Some(true)),
        ("DO 1", None),
        ("SET @a = 1", None),
        ("CALL p()", None),
    ] {
        assert_eq!(classify(sql.as_bytes()).opens_tables(), opens, "{sql}");
    }
}

#[test]
fn last_gtid_reads_take_the_sessions_own_value() {
    let table: &[(&str, Option<&str>)] = &[
        (
            "SELECT @@last_gtid",
            Some("SELECT '0-1-5' AS `@@last_gtid`"),
        ),
        (
            "select @@SESSION.last_gtid;",
            Some("select '0-1-5' AS `@@SESSION.last_gtid`;"),
        ),
        (
            "SELECT 1, @@last_gtid, 2 FROM dual",
            Some("SELECT 1, '0-1-5' AS `@@last_gtid`, 2 FROM dual"),
        ),
        ("SELECT @@last_gtid AS g", Some("SELECT '0-1-5' AS g")),
        ("SELECT @@last_gtid g", Some("SELECT '0-1-5' g")),
        (
            "SELECT CONCAT('x', @@last_gtid)",
            Some("SELECT CONCAT('x', '0-1-5')"),
        ),
        ("SET @g = @@last_gtid", Some("SET @g = '0-1-5'")),
        (
            "INSERT INTO t VALUES (1, @@last_gtid, 2)",
            Some("INSERT INTO t VALUES (1, '0-1-5', 2)"),
        ),
        (
            "SELECT a FROM t GROUP BY a, @@last_gtid",
            Some("SELECT a FROM t GROUP BY a, '0-1-5'"),
        ),
        ("SELECT @@`last_gtid`", Some("SELECT '0-1-5'")),
        (
            "SELECT g.`@@last_gtid` FROM (SELECT @@last_gtid) g",
            Some("SELECT g.`@@last_gtid` FROM (SELECT '0-1-5' AS `@@last_gtid`) g"),
        ),
        (
            "SELECT 1 FROM t WHERE g IN (SELECT @@last_gtid)",
            Some("SELECT 1 FROM t WHERE g IN (SELECT '0-1-5' AS `@@last_gtid`)"),
        ),
        ("SET @@last_gtid = 'x'", None),
        ("SET @@session.last_gtid := 'x'", None),
        ("SELECT '@@last_gtid', @@global.last_gtid", None),
        ("SELECT @@last_insert_id /* @@last_gtid */", None),
        ("SELECT @@gtid_binlog_pos", None),
    ];
    for (sql, want) in table {
        let got = crate::classify::with_last_gtid(sql.as_bytes(), "0-1-5", true);
        assert_eq!(
            got.as_deref()
                .map(|b| std::str::from_utf8(b).expect("utf8")),
            *want,
            "{sql}"
        );
    }
    // An empty value (no commit yet) is an empty string; anything but a GTID is not written in.
    assert_eq!(
        crate::classify::with_last_gtid(b"SELECT @@last_gtid", "", true).as_deref(),
        Some(&b"SELECT '' AS `@@last_gtid`"[..])
    );
    assert_eq!(
        crate::classify::with_last_gtid(b"SELECT @@last_gtid", "0-1-5' OR '", true),
        None
    );
}

#[test]
fn xa_is_found_by_name_in_text_rwsplit_does_not_take_apart() {
    for sql in [
        "EXECUTE IMMEDIATE 'XA START ''x'''",
        "BEGIN NOT ATOMIC xa start 'x'; INSERT INTO t VALUES (1); XA END 'x'; END",
        "XA PREPARE 'x'",
    ] {
        assert!(crate::classify::names_xa(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "SELECT xa_col FROM t",
        "SELECT 1 FROM extra",
        "SELECT 'xa_x'",
        "SELECT $xa",
    ] {
        assert!(!crate::classify::names_xa(sql.as_bytes()), "{sql}");
    }
}

#[test]
fn kill_targets_are_read_with_comments_and_quoted_ids() {
    for (sql, want) in [
        ("KILL 5", Some((KillId::Id(5), false))),
        ("kill query 12;", Some((KillId::Id(12), true))),
        ("KILL CONNECTION 7", Some((KillId::Id(7), false))),
        ("KILL HARD QUERY 9", Some((KillId::Id(9), true))),
        (
            "KILL /*x*/ QUERY /* y */ 123 -- done",
            Some((KillId::Id(123), true)),
        ),
        ("/* lead */ KILL QUERY 4", Some((KillId::Id(4), true))),
        ("KILL QUERY '123'", Some((KillId::Id(123), true))),
        ("KILL QUERY \"8\"", Some((KillId::Id(8), true))),
        ("KILL CONNECTION_ID()", Some((KillId::Own, false))),
        ("kill query connection_id ( );", Some((KillId::Own, true))),
        (
            "KILL CONNECTION CONNECTION_ID()",
            Some((KillId::Own, false)),
        ),
        ("KILL CONNECTION_ID() + 1", None),
        ("KILL CONNECTION_ID(5)", None),
        ("KILL QUERY 12.5", None),
        ("KILL QUERY 0x1f", None),
        ("KILL QUERY '12' + 1", None),
        ("KILL QUERY '12\"", None),
        ("KILL QUERY 'x'", None),
        ("KILL QUERY ID 5", None),
        ("KILL USER app", None),
        ("KILL (SELECT 5)", None),
        ("KILL 5 6", None),
        ("KILL 99999999999", None),
        ("SELECT 5", None),
    ] {
        assert_eq!(kill_target(sql.as_bytes()), want, "{sql:?}");
    }
}

/// Classified as a `KILL` that rwsplit does not answer itself (the session refuses it).
fn runs_kill(sql: &[u8]) -> bool {
    classify(sql).kind == K::Kill && kill_target(sql).is_none()
}

#[test]
fn prepares_and_immediates_that_run_a_kill_are_told() {
    for (sql, kill) in [
        ("PREPARE s FROM 'KILL QUERY 5'", true),
        ("PREPARE s FROM ' /* x */ kill 5'", true),
        ("EXECUTE IMMEDIATE 'KILL QUERY 12'", true),
        ("EXECUTE IMMEDIATE \"KILL 12\"", true),
        ("EXECUTE IMMEDIATE 'SELECT ''kill'''", false),
        ("PREPARE s FROM 'SELECT 1'", false),
        ("PREPARE s FROM @sql", false),
        ("EXECUTE IMMEDIATE 'KILLED'", false),
        // The string after FROM, not the first quote anywhere.
        ("PREPARE s FROM /* it's */ 'KILL 1'", true),
        ("EXECUTE s USING 'Kill Bill'", false),
        ("PREPARE s FROM 'SELECT ?'", false),
        // Multi-statements and compound statements.
        ("KILL 5; SELECT 1", true),
        ("SELECT 1; kill query 5", true),
        ("BEGIN NOT ATOMIC KILL 5; END", true),
        ("SELECT 'KILL'; SELECT 2", false),
        ("CREATE PROCEDURE p() BEGIN KILL 5; END", false),
    ] {
        assert_eq!(runs_kill(sql.as_bytes()), kill, "{sql:?}");
    }
}

#[test]
fn reads_of_connection_id_are_marked() {
    for (sql, marked) in [
        ("SELECT CONNECTION_ID()", true),
        ("select connection_id ( )", true),
        ("SELECT CONNECTION_ID() FROM t FOR UPDATE", true),
        ("SELECT connection_id FROM t", false),
        ("SELECT 'CONNECTION_ID()'", false),
        ("SELECT 1", false),
    ] {
        assert_eq!(
            classify(sql.as_bytes()).reads_connection_id,
            marked,
            "{sql:?}"
        );
    }
}
