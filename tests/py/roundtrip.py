#!/usr/bin/env python3
"""A PyMySQL round trip, run by tests/clients.rs once directly against MySQL
and once through causeway; the two outputs must match.

Usage: roundtrip.py HOST PORT USER PASSWORD DB

Creates a table with many column types in DB (which must exist and be
empty), inserts rows (NULLs, utf8mb4, a 1 MB blob, decimals, dates), reads
them back with cursor.description, runs a failing statement, uses
executemany, and commits and rolls back transactions. Prints one line per
observation; the first line is the server version (compared separately, as
causeway announces `<version>-causeway`).
"""

import datetime
import decimal
import hashlib
import sys

try:
    import pymysql
    import pymysql.cursors
    import pymysql.constants.CLIENT
except ImportError:  # the Rust test turns this into a failure
    print("PYMYSQL_MISSING: python3 cannot import pymysql", file=sys.stderr)
    sys.exit(3)


def show(label, value):
    print(f"{label}: {value!r}")


def rows_repr(rows):
    out = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, (bytes, bytearray)) and len(v) > 64:
                cells.append(f"<{len(v)} bytes sha256={hashlib.sha256(v).hexdigest()}>")
            else:
                cells.append(repr(v))
        out.append("(" + ", ".join(cells) + ")")
    return "[" + ", ".join(out) + "]"


def main():
    host, port, user, password, db = sys.argv[1:6]
    conn = pymysql.connect(
        host=host,
        port=int(port),
        user=user,
        password=password,
        database=db,
        charset="utf8mb4",
        autocommit=True,
        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
    )
    print(f"server_version: {conn.get_server_info()}")
    cur = conn.cursor()

    cur.execute(
        """CREATE TABLE t (
            id INT PRIMARY KEY AUTO_INCREMENT,
            i INT, bi BIGINT UNSIGNED, f DOUBLE, d DECIMAL(20,6),
            s VARCHAR(100), txt TEXT, b LONGBLOB, dt DATETIME(6), da DATE,
            tm TIME, js JSON, e ENUM('red','green'), bo BOOL
        ) CHARACTER SET utf8mb4"""
    )
    show("create rowcount", cur.rowcount)

    blob = bytes((i * 7 + 3) % 256 for i in range(1024 * 1024))
    n = cur.execute(
        "INSERT INTO t (i, bi, f, d, s, txt, b, dt, da, tm, js, e, bo) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            -42,
            18446744073709551615,
            3.5,
            decimal.Decimal("12345678901234.123456"),
            "héllo 🦀 wörld",
            "ünïcödé text ✓",
            blob,
            datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
            datetime.date(1999, 12, 31),
            datetime.timedelta(hours=-5, minutes=-6, seconds=-7),
            '{"k": [1, "ü", null]}',
            "green",
            True,
        ),
    )
    show("insert affected", n)
    show("lastrowid", cur.lastrowid)
    cur.execute("INSERT INTO t (i) VALUES (NULL)")
    show("null row lastrowid", cur.lastrowid)

    n = cur.executemany(
        "INSERT INTO t (i, s, d) VALUES (%s, %s, %s)",
        [(k, f"row {k} ✓", decimal.Decimal(k) / 7) for k in range(1, 51)],
    )
    show("executemany affected", n)

    cur.execute("SELECT * FROM t ORDER BY id")
    show("description", cur.description)
    rows = cur.fetchall()
    show("rowcount", cur.rowcount)
    print("rows: " + rows_repr(rows))
    assert rows[0][7] == blob, "1 MB blob corrupted"

    cur.execute("SELECT SUM(d), COUNT(*), MAX(s) FROM t WHERE s LIKE 'row%%'")
    show("aggregate", cur.fetchall())

    cur.execute("SELECT NULL, '', 0x00FF, CAST('2024-01-01' AS DATE), 1.5e300, -0.0")
    show("literals description", cur.description)
    show("literals", cur.fetchall())

    for bad in (
        "SELECT * FROM no_such_table",
        "INSERT INTO t (id) VALUES (1)",
        "SELEKT 1",
    ):
        try:
            cur.execute(bad)
            print("no error for: " + bad)
        except pymysql.MySQLError as e:
            show("error " + type(e).__name__, e.args)

    # transactions: rolled back, then committed
    conn.autocommit(False)
    conn.begin()
    cur.execute("INSERT INTO t (i, s) VALUES (1000, 'rolled back')")
    cur.execute("SELECT COUNT(*) FROM t WHERE i = 1000")
    show("inside rolled-back trx", cur.fetchall())
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM t WHERE i = 1000")
    show("after rollback", cur.fetchall())
    conn.commit()
    conn.begin()
    cur.execute("UPDATE t SET s = 'committed' WHERE i BETWEEN 1 AND 10")
    show("update affected", cur.rowcount)
    conn.commit()
    conn.autocommit(True)
    cur.execute("SELECT id, s FROM t WHERE s = 'committed' ORDER BY id")
    show("after commit", cur.fetchall())

    # server-side cursor, streamed
    ss = conn.cursor(pymysql.cursors.SSCursor)
    ss.execute("SELECT id, i FROM t ORDER BY id")
    streamed = 0
    for _ in ss:
        streamed += 1
    show("streamed rows", streamed)
    ss.close()

    # several statements in one COM_QUERY: several result sets
    cur.execute("SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; DO 0")
    sets = [cur.fetchall()]
    while cur.nextset():
        sets.append((cur.description, cur.fetchall()))
    show("multi results", sets)

    cur.execute("SHOW WARNINGS")
    show("warnings", cur.fetchall())
    cur.execute("SELECT 1/0")
    show("div by zero", cur.fetchall())
    cur.execute("SHOW WARNINGS")
    show("warnings after 1/0", cur.fetchall())

    conn.ping(reconnect=False)
    show("ping", "ok")
    cur.execute("SELECT DATABASE(), CURRENT_USER()")
    show("session", cur.fetchall())
    cur.close()
    conn.close()
    print("done")


main()
