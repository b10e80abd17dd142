// go-sql-driver/mysql (database/sql) through rwsplit: queries with arguments (the driver
// prepares, executes and closes a statement for each), prepared statements shared by
// goroutines, transactions, client-side interpolation, multi-statements, LOAD DATA LOCAL from
// a reader, a 4 MiB blob, a query cancelled by its context, and the server's errors.
//
// Usage: go run gosql_client.go HOST PORT TABLE_PREFIX (GOPATH mode, Debian's
// golang-github-go-sql-driver-mysql-dev). Exits non-zero on any mismatch.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go client: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// The server's error number of err, 0 if it is not a server error.
func code(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func open(host, port, params string) *sql.DB {
	db, err := sql.Open("mysql", fmt.Sprintf("app:app@tcp(%s:%s)/app?%s", host, port, params))
	check(err, "open")
	db.SetMaxOpenConns(8)
	return db
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: gosql_client HOST PORT TABLE_PREFIX")
	}
	host, port, t := os.Args[1], os.Args[2], os.Args[3]+"_go"
	ctx := context.Background()
	db := open(host, port, "parseTime=true&loc=UTC&multiStatements=true")
	defer db.Close()
	check(db.PingContext(ctx), "ping")

	_, err := db.Exec(fmt.Sprintf(`CREATE TABLE %s (id INT PRIMARY KEY AUTO_INCREMENT,
		name VARCHAR(50), amount DECIMAL(10,2), at DATETIME(6), data LONGBLOB)`, t))
	check(err, "create table")

	// Arguments: the driver prepares, executes and closes a statement for each call.
	at := time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)
	var lastID int64
	for i := 1; i <= 30; i++ {
		res, err := db.Exec(fmt.Sprintf("INSERT INTO %s (name, amount, at, data) VALUES (?, ?, ?, ?)", t),
			fmt.Sprintf("name%d", i), fmt.Sprintf("%d.25", i), at.Add(time.Duration(i)*time.Hour), []byte{byte(i), 0, 255})
		check(err, "insert")
		lastID, err = res.LastInsertId()
		check(err, "last insert id")
		if n, _ := res.RowsAffected(); n != 1 {
			fail("insert affected %d rows", n)
		}
	}
	if lastID != 30 {
		fail("last insert id %d, want 30", lastID)
	}
	// Read back without a hint: read-your-writes sends it where the rows are.
	var name, amount string
	var when time.Time
	var data []byte
	err = db.QueryRow(fmt.Sprintf("SELECT name, amount, at, data FROM %s WHERE id = ?", t), 7).
		Scan(&name, &amount, &when, &data)
	check(err, "select by id")
	if name != "name7" || amount != "7.25" || !when.Equal(at.Add(7*time.Hour)) || !bytes.Equal(data, []byte{7, 0, 255}) {
		fail("row 7: %q %q %v %v", name, amount, when, data)
	}
	// NULL in and out.
	_, err = db.Exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (?, ?)", t), 100, nil)
	check(err, "insert null")
	var null sql.NullString
	check(db.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = ?", t), 100).Scan(&null), "select null")
	if null.Valid {
		fail("NULL read back as %q", null.String)
	}

	// One prepared statement run by many goroutines (the pool prepares it on each of its
	// connections).
	stmt, err := db.Prepare(fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE id <= ?", t))
	check(err, "prepare")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				want := (g+i)%30 + 1
				var n int
				if err := stmt.QueryRow(want).Scan(&n); err != nil {
					errs <- err
					return
				}
				if n != want {
					errs <- fmt.Errorf("goroutine %d: count %d, want %d", g, n, want)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("prepared statement from goroutines: %v", err)
	}
	check(stmt.Close(), "close statement")

	// A transaction: its write is seen inside it, and gone after a rollback; a commit keeps it.
	tx, err := db.BeginTx(ctx, nil)
	check(err, "begin")
	_, err = tx.Exec(fmt.Sprintf("UPDATE %s SET name = ? WHERE id = ?", t), "in-trx", 1)
	check(err, "update in transaction")
	check(tx.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = ?", t), 1).Scan(&name), "read in transaction")
	if name != "in-trx" {
		fail("transaction read %q", name)
	}
	check(tx.Rollback(), "rollback")
	check(db.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = ?", t), 1).Scan(&name), "after rollback")
	if name != "name1" {
		fail("after rollback: %q", name)
	}
	tx, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	check(err, "begin serializable")
	_, err = tx.Exec(fmt.Sprintf("DELETE FROM %s WHERE id > ?", t), 25)
	check(err, "delete")
	check(tx.Commit(), "commit")
	var count int
	check(db.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s", t)).Scan(&count), "count after commit")
	if count != 25 {
		fail("count after commit %d, want 25", count)
	}
	// A read-only transaction reads.
	tx, err = db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	check(err, "begin read only")
	check(tx.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE id <= ?", t), 10).Scan(&count), "read-only read")
	check(tx.Commit(), "commit read only")
	if count != 10 {
		fail("read-only transaction counted %d", count)
	}

	// Multi-statements: an Exec of two updates.
	_, err = db.Exec(fmt.Sprintf("UPDATE %s SET amount = 1 WHERE id = 1; UPDATE %s SET amount = 2 WHERE id = 2", t, t))
	check(err, "multi-statement")
	check(db.QueryRow(fmt.Sprintf("SELECT SUM(amount) FROM %s WHERE id IN (1, 2)", t)).Scan(&amount), "sum")
	if amount != "3.00" {
		fail("multi-statement sum %q", amount)
	}

	// Client-side interpolation (text protocol): quotes and backslashes are escaped by the
	// status flags rwsplit reports, as against the server.
	idb := open(host, port, "interpolateParams=true")
	defer idb.Close()
	tricky := `it's a "quote" \ and a backslash\'`
	_, err = idb.Exec(fmt.Sprintf("UPDATE %s SET name = ? WHERE id = ?", t), tricky, 3)
	check(err, "interpolated update")
	check(idb.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = ?", t), 3).Scan(&name), "interpolated read")
	if name != tricky {
		fail("interpolated round trip: %q", name)
	}

	// LOAD DATA LOCAL from a reader.
	var csv strings.Builder
	for i := 1000; i < 1500; i++ {
		fmt.Fprintf(&csv, "%d,loaded%d\n", i, i)
	}
	mysql.RegisterReaderHandler("rows", func() io.Reader { return strings.NewReader(csv.String()) })
	res, err := db.Exec(fmt.Sprintf("LOAD DATA LOCAL INFILE 'Reader::rows' INTO TABLE %s FIELDS TERMINATED BY ',' (id, name)", t))
	check(err, "load data local")
	if n, _ := res.RowsAffected(); n != 500 {
		fail("load data loaded %d rows", n)
	}

	// A 4 MiB blob as a prepared statement's parameter, and back.
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	_, err = db.Exec(fmt.Sprintf("UPDATE %s SET data = ? WHERE id = ?", t), big, 4)
	check(err, "large blob")
	check(db.QueryRow(fmt.Sprintf("SELECT data FROM %s WHERE id = ?", t), 4).Scan(&data), "read large blob")
	if sha256.Sum256(data) != sha256.Sum256(big) {
		fail("large blob came back as %d different bytes", len(data))
	}

	// A query cancelled by its context: the driver closes that connection; the pool goes on.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = db.ExecContext(cctx, "DO SLEEP(3)")
	cancel()
	if err == nil {
		fail("a cancelled query succeeded")
	}
	check(db.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s", t)).Scan(&count), "after cancel")
	if count != 525 {
		fail("count after cancel %d, want 525", count)
	}

	// The server's errors, on both protocols.
	_, err = db.Exec("SELECT * FROM no_such_table_xyz")
	if code(err) != 1146 {
		fail("text error: %v", err)
	}
	_, err = db.Exec("SELECT * FROM no_such_table_xyz WHERE a = ?", 1)
	if code(err) != 1146 {
		fail("binary error: %v", err)
	}
	_, err = db.Exec(fmt.Sprintf("INSERT INTO %s (id) VALUES (?)", t), 1)
	if code(err) != 1062 {
		fail("duplicate key: %v", err)
	}
	bad, err := sql.Open("mysql", fmt.Sprintf("app:wrong@tcp(%s:%s)/app", host, port))
	check(err, "open with a wrong password")
	if err := bad.Ping(); code(err) != 1045 {
		fail("wrong password: %v", err)
	}
	bad.Close()

	_, err = db.Exec("DROP TABLE " + t)
	check(err, "drop")
	fmt.Println("go client: ok")
}
