"""mysqlclient (MySQLdb, on Debian's libmariadb) through rwsplit: queries, executemany, a
transaction, warnings and SHOW WARNINGS after a read, select_db (COM_INIT_DB), ping, affected
rows and insert ids, multi-statements, stored procedures, and the server's errors.

Usage: /usr/bin/python3 mysqlclient_client.py HOST PORT TABLE_PREFIX (Debian's python3-mysqldb)
Exits non-zero (with a traceback) on any mismatch.
"""
import sys

import MySQLdb
from MySQLdb.constants import CLIENT

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = prefix + "_mysqlclient"
p = prefix + "_proc"

conn = MySQLdb.connect(host=host, port=port, user="app", password="app", database="app",
                       charset="utf8mb4", autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS)
cur = conn.cursor()
cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), n INT)")
# executemany of an INSERT is rewritten into one multi-row INSERT by the driver.
cur.executemany(f"INSERT INTO {t} (name, n) VALUES (%s, %s)", [(f"name{i}", i) for i in range(1, 51)])
assert cur.rowcount == 50, cur.rowcount
assert conn.insert_id() == 1, conn.insert_id()  # the first id of a multi-row insert
cur.execute(f"INSERT INTO {t} (name, n) VALUES (%s, %s)", ("emoji \U0001F600", 51))
assert conn.insert_id() == 51, conn.insert_id()
cur.execute(f"SELECT name FROM {t} WHERE n = %s", (51,))
assert cur.fetchone() == ("emoji \U0001F600",), "4-byte UTF-8 round trip"
cur.execute(f"UPDATE {t} SET n = n + 1 WHERE id <= 10")
assert conn.affected_rows() == 10, conn.affected_rows()
assert "Rows matched: 10" in (conn.info() or ""), conn.info()

# Warnings: the count from the read's EOF/OK, and SHOW WARNINGS where that read ran.
cur.execute("SELECT CAST('12abc' AS SIGNED)")
assert cur.fetchone() == (12,)
assert conn.warning_count() == 1, conn.warning_count()
warnings = conn.show_warnings()
assert len(warnings) == 1 and warnings[0][1] == 1292, warnings

# A transaction.
conn.autocommit(False)
cur.execute(f"UPDATE {t} SET name = 'in-trx' WHERE id = 1")
cur.execute(f"SELECT name FROM {t} WHERE id = 1")
assert cur.fetchone() == ("in-trx",)
conn.rollback()
cur.execute(f"SELECT name FROM {t} WHERE id = 1")
assert cur.fetchone() == ("name1",)
conn.commit()
conn.autocommit(True)

# Multi-statements and a procedure's result sets.
cur.execute(f"SELECT COUNT(*) FROM {t}; SELECT MAX(n) FROM {t}")
assert cur.fetchone() == (51,)
assert cur.nextset()
assert cur.fetchone() == (51,)
assert cur.nextset() is None
cur.execute(f"CREATE PROCEDURE {p}(IN lo INT) BEGIN SELECT COUNT(*) FROM {t} WHERE n >= lo; "
            f"SELECT 'done'; END")
cur.callproc(p, (40,))
assert cur.fetchone() == (12,), "first result of the procedure"
assert cur.nextset()
assert cur.fetchone() == ("done",)
while cur.nextset():
    pass
cur.execute(f"DROP PROCEDURE {p}")

# COM_INIT_DB and COM_PING.
conn.select_db("information_schema")
cur.execute("SELECT DATABASE()")
assert cur.fetchone() == ("information_schema",)
conn.select_db("app")
conn.ping()
cur.execute(f"SELECT COUNT(*) FROM {t}")
assert cur.fetchone() == (51,)

# The server's errors.
for sql, code in [("SELECT * FROM no_such_table_xyz", 1146),
                  (f"INSERT INTO {t} (id) VALUES (1)", 1062),
                  ("SELEC 1", 1064)]:
    try:
        cur.execute(sql)
        raise AssertionError(f"expected {code} from {sql}")
    except MySQLdb.Error as e:
        assert e.args[0] == code, (sql, e.args)
try:
    conn.select_db("no_such_db_xyz")
    raise AssertionError("select_db of an unknown database")
except MySQLdb.Error as e:
    assert e.args[0] in (1044, 1049), e.args

cur.execute(f"DROP TABLE {t}")
conn.close()
try:
    MySQLdb.connect(host=host, port=port, user="app", password="wrong", database="app")
    raise AssertionError("wrong password accepted")
except MySQLdb.OperationalError as e:
    assert e.args[0] == 1045, e.args
print("mysqlclient client: ok")
