"""PyMySQL through rwsplit: queries, a transaction, multi-statements, LOAD DATA LOCAL INFILE.

Usage: python3 pymysql_client.py HOST PORT TABLE_PREFIX
Exits non-zero (with a traceback) on any mismatch.
"""
import os
import sys
import tempfile

import pymysql
from pymysql.constants import CLIENT

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = prefix + "_py"


def connect(**kw):
    return pymysql.connect(host=host, port=port, user="app", password="app", database="app",
                           autocommit=True, **kw)


conn = connect(local_infile=True, client_flag=CLIENT.MULTI_STATEMENTS)
cur = conn.cursor()

cur.execute("SELECT 1 + 1")
assert cur.fetchone() == (2,), "arithmetic"

cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(50), score DOUBLE)")
cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s)", [(i, f"name{i}", i * 1.5) for i in range(10)])
assert cur.rowcount == 10, cur.rowcount

# A transaction: the row written inside it is visible inside it, and gone after rollback.
conn.begin()
cur.execute(f"INSERT INTO {t} VALUES (100, 'in-trx', 0)")
cur.execute(f"SELECT name FROM {t} WHERE id = 100")
assert cur.fetchone() == ("in-trx",), "read your write inside the transaction"
conn.rollback()
cur.execute(f"/* rwsplit:primary */ SELECT COUNT(*) FROM {t} WHERE id = 100")
assert cur.fetchone() == (0,), "rolled back"

# Committed rows read back (on the primary, so replication lag cannot hide them).
conn.begin()
cur.execute(f"UPDATE {t} SET score = score + 1 WHERE id < 5")
assert cur.rowcount == 5, cur.rowcount
conn.commit()
cur.execute(f"/* rwsplit:primary */ SELECT SUM(score) FROM {t}")
assert abs(cur.fetchone()[0] - (sum(i * 1.5 for i in range(10)) + 5)) < 1e-9

# Multi-statements: two result sets.
cur.execute(f"SELECT COUNT(*) FROM {t}; SELECT MAX(id) FROM {t}")
assert cur.fetchone() == (10,)
assert cur.nextset()
assert cur.fetchone() == (9,)
assert not cur.nextset()

# LOAD DATA LOCAL INFILE.
with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    for i in range(200, 1200):
        f.write(f"{i},loaded{i},{i}\n")
    path = f.name
try:
    cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {t} FIELDS TERMINATED BY ','")
    assert cur.rowcount == 1000, cur.rowcount
finally:
    os.unlink(path)
cur.execute(f"/* rwsplit:primary */ SELECT COUNT(*) FROM {t} WHERE name LIKE 'loaded%%'")
assert cur.fetchone() == (1000,)

# Errors come through as the server's.
try:
    cur.execute("SELECT * FROM no_such_table_xyz")
    raise AssertionError("expected an error")
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1146, e.args

cur.execute(f"DROP TABLE {t}")
conn.close()

try:
    pymysql.connect(host=host, port=port, user="app", password="wrong", database="app")
    raise AssertionError("wrong password accepted")
except pymysql.err.OperationalError as e:
    assert e.args[0] == 1045, e.args

print("pymysql client: ok")
