// MariaDB Connector/J (JDBC) through rwsplit: the driver's own session setup at connect,
// statements, server-side prepared statements with every common parameter type, batches,
// generated keys, transactions, multiple result sets, a query timeout, and the server's errors.
//
// Usage: java -cp /usr/share/java/mariadb-java-client.jar JdbcClient.java HOST PORT TABLE_PREFIX
// Exits non-zero on any mismatch.
import java.math.BigDecimal;
import java.sql.*;
import java.util.Arrays;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    interface Sql { void run() throws SQLException; }

    static int errorCode(Sql s) {
        try {
            s.run();
        } catch (SQLException e) {
            return e.getErrorCode();
        }
        return 0;
    }

    static long scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            check(rs.next(), "a row for " + sql);
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String host = args[0], port = args[1], t = args[2] + "_java";
        String base = "jdbc:mariadb://" + host + ":" + port + "/app?user=app&password=app";
        try (Connection c = DriverManager.getConnection(base + "&useServerPrepStmts=true&allowMultiQueries=true")) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE " + t + " (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50),"
                        + " amount DECIMAL(12,3), at TIMESTAMP(3) NULL, day DATE, data BLOB, flag BOOLEAN)");
            }
            // Server-side prepared statements, every common type, generated keys.
            Timestamp at = Timestamp.valueOf("2024-02-29 13:14:15.123");
            try (PreparedStatement p = c.prepareStatement("INSERT INTO " + t
                    + " (name, amount, at, day, data, flag) VALUES (?, ?, ?, ?, ?, ?)", Statement.RETURN_GENERATED_KEYS)) {
                for (int i = 1; i <= 20; i++) {
                    p.setString(1, "name" + i);
                    p.setBigDecimal(2, new BigDecimal(i + ".125"));
                    p.setTimestamp(3, at);
                    p.setDate(4, Date.valueOf("2024-03-" + String.format("%02d", i)));
                    p.setBytes(5, new byte[] {(byte) i, 0, (byte) 255});
                    p.setBoolean(6, i % 2 == 0);
                    check(p.executeUpdate() == 1, "insert " + i);
                    try (ResultSet keys = p.getGeneratedKeys()) {
                        check(keys.next() && keys.getLong(1) == i, "generated key " + i);
                    }
                }
            }
            try (PreparedStatement p = c.prepareStatement("SELECT name, amount, at, day, data, flag FROM " + t + " WHERE id = ?")) {
                p.setInt(1, 8);
                try (ResultSet rs = p.executeQuery()) {
                    check(rs.next(), "row 8");
                    check(rs.getString(1).equals("name8"), "name");
                    check(rs.getBigDecimal(2).compareTo(new BigDecimal("8.125")) == 0, "decimal " + rs.getBigDecimal(2));
                    check(rs.getTimestamp(3).equals(at), "timestamp " + rs.getTimestamp(3));
                    check(rs.getDate(4).toString().equals("2024-03-08"), "date " + rs.getDate(4));
                    check(Arrays.equals(rs.getBytes(5), new byte[] {8, 0, (byte) 255}), "blob");
                    check(rs.getBoolean(6), "boolean");
                    check(!rs.next(), "one row");
                }
                p.setNull(1, Types.INTEGER);
                try (ResultSet rs = p.executeQuery()) {
                    check(!rs.next(), "no row for NULL");
                }
            }
            // A batch.
            try (PreparedStatement p = c.prepareStatement("INSERT INTO " + t + " (id, name) VALUES (?, ?)")) {
                for (int i = 100; i < 150; i++) {
                    p.setInt(1, i);
                    p.setString(2, "batch" + i);
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check(counts.length == 50, "batch counts " + counts.length);
            }
            check(scalar(c, "SELECT COUNT(*) FROM " + t + " WHERE name LIKE 'batch%'") == 50, "batch rows");

            // Transactions: a rollback undoes, a commit keeps; the transaction reads its write.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE " + t + " SET name = 'in-trx' WHERE id = 1");
                check(scalar(c, "SELECT COUNT(*) FROM " + t + " WHERE name = 'in-trx'") == 1, "read in transaction");
                c.rollback();
                check(scalar(c, "SELECT COUNT(*) FROM " + t + " WHERE name = 'in-trx'") == 0, "after rollback");
                s.executeUpdate("DELETE FROM " + t + " WHERE id >= 140");
                c.commit();
            }
            c.setAutoCommit(true);
            check(scalar(c, "SELECT COUNT(*) FROM " + t) == 60, "after commit");
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            c.setAutoCommit(false);
            check(scalar(c, "SELECT COUNT(*) FROM " + t + " WHERE id < 100") == 20, "serializable read");
            c.commit();
            c.setAutoCommit(true);
            c.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);

            // Multiple result sets.
            try (Statement s = c.createStatement()) {
                check(s.execute("SELECT COUNT(*) FROM " + t + "; SELECT MAX(id) FROM " + t), "first result");
                try (ResultSet rs = s.getResultSet()) {
                    check(rs.next() && rs.getLong(1) == 60, "first count");
                }
                check(s.getMoreResults(), "second result");
                try (ResultSet rs = s.getResultSet()) {
                    check(rs.next() && rs.getLong(1) == 139, "second max");
                }
                check(!s.getMoreResults() && s.getUpdateCount() == -1, "no third result");
            }
            // Warnings come from the statement that raised them.
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT CAST('12abc' AS SIGNED)")) {
                check(rs.next() && rs.getLong(1) == 12, "cast");
                SQLWarning w = s.getWarnings();
                check(w != null && w.getErrorCode() == 1292, "warning " + w);
            }
            // A query timeout (MariaDB: max_statement_time) ends the statement, not the session.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                int e = errorCode(() -> s.executeQuery("SELECT SLEEP(3)").close());
                check(e == 1969, "query timeout code " + e);
            }
            check(scalar(c, "SELECT 1") == 1, "after the timeout");

            // The server's errors.
            check(errorCode(() -> c.createStatement().executeQuery("SELECT * FROM no_such_table_xyz")) == 1146, "1146 text");
            check(errorCode(() -> {
                try (PreparedStatement p = c.prepareStatement("SELECT * FROM no_such_table_xyz WHERE a = ?")) {
                    p.setInt(1, 1);
                    p.executeQuery();
                }
            }) == 1146, "1146 binary");
            check(errorCode(() -> c.createStatement().executeUpdate("INSERT INTO " + t + " (id) VALUES (1)")) == 1062, "1062");
            check(c.isValid(2), "connection still valid");
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE " + t);
            }
        }
        int e = errorCode(() -> DriverManager.getConnection(
                "jdbc:mariadb://" + host + ":" + port + "/app?user=app&password=wrong").close());
        check(e == 1045, "wrong password: " + e);
        System.out.println("jdbc client: ok");
    }
}
