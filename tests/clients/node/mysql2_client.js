// node mysql2 through rwsplit: text queries, server-side prepared statements
// (binary protocol via execute()), a transaction, multi-statements, errors.
//
// Usage: node mysql2_client.js HOST PORT TABLE_PREFIX
// Exits non-zero on any mismatch.
'use strict';
const assert = require('node:assert/strict');
const mysql = require('mysql2/promise');

const [host, port, prefix] = process.argv.slice(2);
const t = `${prefix}_node`;

async function main() {
  const conn = await mysql.createConnection({
    host, port: Number(port), user: 'app', password: 'app', database: 'app',
    multipleStatements: true, supportBigNumbers: true,
  });

  const [[one]] = await conn.query('SELECT 1 + 1 AS two');
  assert.equal(one.two, 2);

  await conn.query(`CREATE TABLE ${t} (id INT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(10,2), at DATETIME, data BLOB)`);

  // Prepared statements over the binary protocol, with every parameter type mysql2 sends.
  for (let i = 0; i < 20; i++) {
    const [res] = await conn.execute(`INSERT INTO ${t} VALUES (?, ?, ?, ?, ?)`,
      [i, `name${i}`, (i * 1.25).toFixed(2), new Date(Date.UTC(2024, 0, 1 + i)), Buffer.from([i, 0, 255])]);
    assert.equal(res.affectedRows, 1);
  }
  const [rows] = await conn.execute(`/* rwsplit:primary */ SELECT id, name, amount, data FROM ${t} WHERE id >= ? ORDER BY id`, [15]);
  assert.deepEqual(rows.map(r => r.id), [15, 16, 17, 18, 19]);
  assert.equal(rows[0].name, 'name15');
  assert.equal(rows[0].amount, '18.75');
  assert.deepEqual([...rows[4].data], [19, 0, 255]);
  // A NULL parameter and a re-execution of a cached statement.
  const [nulls] = await conn.execute(`/* rwsplit:primary */ SELECT COUNT(*) AS n FROM ${t} WHERE name = ? OR ? IS NULL`, ['name3', null]);
  assert.equal(nulls[0].n, 20);
  const [again] = await conn.execute(`/* rwsplit:primary */ SELECT COUNT(*) AS n FROM ${t} WHERE name = ? OR ? IS NULL`, ['name3', 1]);
  assert.equal(again[0].n, 1);

  // A transaction: its own write is visible inside it; rollback removes it.
  await conn.beginTransaction();
  await conn.execute(`INSERT INTO ${t} (id, name) VALUES (?, ?)`, [100, 'in-trx']);
  const [inTrx] = await conn.execute(`SELECT name FROM ${t} WHERE id = ?`, [100]);
  assert.equal(inTrx.length, 1);
  await conn.rollback();
  const [gone] = await conn.query(`/* rwsplit:primary */ SELECT COUNT(*) AS n FROM ${t} WHERE id = 100`);
  assert.equal(gone[0].n, 0);

  // Multi-statements: two result sets.
  const [sets] = await conn.query(`SELECT COUNT(*) AS n FROM ${t}; SELECT MAX(id) AS m FROM ${t}`);
  assert.equal(sets.length, 2);
  assert.equal(sets[0][0].n, 20);
  assert.equal(sets[1][0].m, 19);

  // Errors are the server's, on both protocols.
  await assert.rejects(conn.query('SELECT * FROM no_such_table_xyz'), e => e.errno === 1146);
  await assert.rejects(conn.execute('SELECT * FROM no_such_table_xyz WHERE a = ?', [1]), e => e.errno === 1146);
  // The session still works after them.
  await conn.ping();

  await conn.query(`DROP TABLE ${t}`);
  await conn.end();

  await assert.rejects(
    mysql.createConnection({ host, port: Number(port), user: 'app', password: 'wrong', database: 'app' }),
    e => e.errno === 1045);
  console.log('mysql2 client: ok');
}

main().catch(e => { console.error(e); process.exit(1); });
