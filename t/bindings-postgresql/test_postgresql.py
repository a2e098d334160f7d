"""bindings.postgresql through a real daprd against a real PostgreSQL
(the cluster of conftest.py): exec with bound parameters and its response
metadata, query results and their JSON types, SQL injection through params
(inert), Dapr's errors for bad SQL and bad requests, close, the server
stopped and started again, and the password kept out of daprd's log."""

import json
import re
import time

import pytest

from conftest import PASSWORD, bc

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|\xb5s|ms|s)|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


def pg_component(name, conn, type_="bindings.postgresql", **meta):
    return bc.component(name, type_, dict({"connectionString": conn}, **meta))


def call(d, op, sql=None, params=None, name="pg"):
    md = {}
    if sql is not None:
        md["sql"] = sql
    if params is not None:
        md["params"] = params if isinstance(params, str) else json.dumps(params)
    return d.invoke(name, {"operation": op, "metadata": md})


def ok(r):
    assert r.status == 200, r
    return r


@pytest.fixture
def d(world, pg):
    return world.daprd([pg_component("pg", pg.conn(), timeout="5s", maxConns="2"),
                        pg_component("pgalias", pg.url(), type_="bindings.postgres")])


def test_exec_with_params_and_metadata(d, pg):
    ok(call(d, "exec", "DROP TABLE IF EXISTS items"))
    r = ok(call(d, "exec", "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, tags jsonb)"))
    assert r.body == b""
    assert r.header("metadata.rows-affected") == "0"
    r = ok(call(d, "exec", "INSERT INTO items VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)",
                [1, "apple", 1.25, {"color": "red"}, 2, "pear", 3, None]))
    assert r.header("metadata.rows-affected") == "2"
    assert r.header("metadata.operation") == "exec"
    assert r.header("metadata.sql").startswith("INSERT INTO items")
    for h in ("start-time", "end-time"):
        assert RFC3339.match(r.header("metadata." + h)), r.headers
    assert r.header("metadata.start-time") <= r.header("metadata.end-time")
    # http.client reads header bytes as Latin-1; Go's "µs" is UTF-8
    dur = r.header("metadata.duration").encode("latin-1").decode("utf-8")
    assert GO_DURATION.match(dur), dur
    assert pg.psql("SELECT id || ':' || name || ':' || price || ':' || coalesce(tags::text, 'NULL') FROM items "
                   "ORDER BY id") == '1:apple:1.25:{"color": "red"}\n2:pear:3:NULL'
    r = ok(call(d, "exec", "UPDATE items SET price = price * $1 WHERE name LIKE $2", [2, "%a%"]))
    assert r.header("metadata.rows-affected") == "2"
    r = ok(call(d, "exec", "DELETE FROM items WHERE id = $1", ["7"]))
    assert r.header("metadata.rows-affected") == "0"
    # the alias type name (Dapr registers both) and a URL connection string
    r = ok(call(d, "exec", "DELETE FROM items WHERE id = $1", [2], name="pgalias"))
    assert r.header("metadata.rows-affected") == "1"


def test_query_results_and_types(d, pg):
    r = ok(call(d, "query", "SELECT 1 WHERE false"))
    assert r.json() == []
    assert r.header("metadata.rows-affected") is None
    assert r.header("metadata.operation") == "query"
    r = ok(call(d, "query", """SELECT 42::int2, 7::int4, 9007199254740993::int8, 1.5::float8, 0.1::float8,
        12.50::numeric, 'héllo "q"'::text, 'v'::varchar, true, false, NULL::int,
        '{"b": [1, 2.5, null], "a": "x"}'::jsonb, '\\x00ff41'::bytea,
        '2024-02-29 13:14:15.123456+00'::timestamptz, '2024-02-29 01:02:03'::timestamp,
        '2024-02-29'::date, '00112233-4455-6677-8899-aabbccddeeff'::uuid, '1 day'::interval"""))
    assert r.content_type == "application/json"
    row = r.json()[0]
    assert row[:11] == [42, 7, 9007199254740993, 1.5, 0.1, 12.5, 'héllo "q"', "v", True, False, None]
    assert b"9007199254740993" in r.body and b"0.1," in r.body    # exact spellings
    assert row[11] == {"a": "x", "b": [1, 2.5, None]}
    assert row[12] == "AP9B"                                       # base64, as Go's []byte
    assert row[13] == "2024-02-29T13:14:15.123456Z"
    assert row[14] == "2024-02-29T01:02:03Z"
    assert row[15] == "2024-02-29T00:00:00Z"
    assert row[16] == [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                       0xee, 0xff]                                 # pgx's [16]byte
    assert row[17] == "1 day"
    # several rows, parameters in a query, and their types inferred by the server
    ok(call(d, "exec", "DROP TABLE IF EXISTS nums"))
    ok(call(d, "exec", "CREATE TABLE nums AS SELECT g AS n, 'n' || g AS s FROM generate_series(1, 5) g"))
    r = ok(call(d, "query", "SELECT n, s FROM nums WHERE n > $1 AND s <> $2 ORDER BY n", [2, "n4"]))
    assert r.json() == [[3, "n3"], [5, "n5"]]
    # NaN cannot be JSON: the error Go's encoder gives in Dapr
    r = call(d, "query", "SELECT 'NaN'::float8")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "unsupported value: NaN")


def test_injection_through_params_is_inert(d, pg):
    ok(call(d, "exec", "DROP TABLE IF EXISTS victims"))
    ok(call(d, "exec", "CREATE TABLE victims (id serial PRIMARY KEY, name text)"))
    ok(call(d, "exec", "INSERT INTO victims (name) VALUES ($1)", ["alice"]))
    attacks = ["x'); DROP TABLE victims; --", "' OR '1'='1", "alice' --", "$1", "\\'; DELETE FROM victims; --",
               "Robert'); DROP TABLE victims;--"]
    for a in attacks:
        r = ok(call(d, "exec", "INSERT INTO victims (name) VALUES ($1)", [a]))
        assert r.header("metadata.rows-affected") == "1"
        r = ok(call(d, "query", "SELECT count(*) FROM victims WHERE name = $1", [a]))
        assert r.json() == [[1]], (a, r)
    # an attack as a filter value matches nothing instead of everything
    r = ok(call(d, "query", "SELECT name FROM victims WHERE name = $1", ["nobody' OR '1'='1"]))
    assert r.json() == []
    # every attack string is stored literally, and the table is intact
    got = [x[0] for x in ok(call(d, "query", "SELECT name FROM victims ORDER BY id")).json()]
    assert got == ["alice"] + attacks
    assert pg.psql("SELECT count(*) FROM victims") == str(1 + len(attacks))
    # several statements in one sql are refused (extended protocol), as with pgx
    r = call(d, "exec", "SELECT 1; DROP TABLE victims")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "SQLSTATE 42601")
    assert pg.psql("SELECT count(*) FROM victims") == str(1 + len(attacks))


def test_errors(d, pg):
    r = call(d, "exec", "SELEC 1")
    body = bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
    assert body["message"] == ('error invoking output binding pg: error executing query: ERROR: syntax error at or '
                               'near "SELEC" (SQLSTATE 42601)'), body
    r = call(d, "query", "SELECT * FROM no_such_table")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING",
                    'error executing query: ERROR: relation "no_such_table" does not exist (SQLSTATE 42P01)')
    r = call(d, "exec", "SELECT $1::int", ["not a number"])
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "(SQLSTATE 22P02)")
    r = call(d, "exec", "SELECT $1::int, $2::int", [1])
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "SQLSTATE 08P01")
    r = call(d, "exec")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "required metadata not set: sql")
    r = call(d, "exec", "SELECT 1", params='{"a": 1}')
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING",
                    "invalid metadata property params: failed to unserialize into an array")
    r = call(d, "exec", "SELECT 1", params="[1,")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "invalid metadata property params")
    r = call(d, "delete", "SELECT 1")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING",
                    "binding pg does not support operation delete")
    # a transaction left open is not handed to the next caller
    ok(call(d, "exec", "BEGIN"))
    bc.wait_for(lambda: ok(call(d, "query", "SELECT count(*) FROM pg_stat_activity "
                                "WHERE state LIKE 'idle in transaction%'")).json() == [[0]],
                10, "the connection left in a transaction is closed")
    # after all that, the binding still works
    assert ok(call(d, "query", "SELECT $1::text", ["fine"])).json() == [["fine"]]


def test_close(d, pg):
    assert ok(call(d, "query", "SELECT 1")).json() == [[1]]
    r = call(d, "close")
    assert r.status == 204, r
    r = call(d, "query", "SELECT 1")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "component is closed")
    assert call(d, "close").status == 204         # close again succeeds, as in Dapr
    # the other component is untouched
    assert ok(call(d, "query", "SELECT 2", name="pgalias")).json() == [[2]]


def test_server_stopped_then_restarted(world, pg):
    d = world.daprd([pg_component("pg", pg.conn(), timeout="3s")])
    assert ok(call(d, "query", "SELECT 1")).json() == [[1]]
    pg.stop("fast")
    try:
        for _ in range(3):
            t0 = time.monotonic()
            r = call(d, "query", "SELECT 1")
            took = time.monotonic() - t0
            body = bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "error executing query: ")
            assert "127.0.0.1" in body["message"] or "connection" in body["message"], body
            assert took < 5, took
    finally:
        pg.start()
    # the first call after the restart works (a broken pooled connection is
    # detected and replaced), and so do later ones
    for i in range(3):
        assert ok(call(d, "query", "SELECT $1::int", [i])).json() == [[i]]
    assert PASSWORD not in d.log_text()


def test_password_never_logged(world, pg):
    bad = pg_component("pgbad", pg.conn(password="wrong-" + PASSWORD), timeout="3s")
    bad = bad.replace("spec:\n", "spec:\n  ignoreErrors: true\n")
    badurl = pg_component("pgbadurl", pg.url(password="wrong-" + PASSWORD), timeout="3s")
    badurl = badurl.replace("spec:\n", "spec:\n  ignoreErrors: true\n")
    d = world.daprd([pg_component("pg", pg.conn()), bad, badurl])
    ok(call(d, "query", "SELECT 1"))
    bc.assert_error(call(d, "query", "SELECT 1", name="pgbad"), 500, "ERR_INVOKE_OUTPUT_BINDING",
                    "couldn't find output binding pgbad")
    d.stop()
    log = d.log_text()
    assert "pgbad" in log and "password authentication failed" in log, log[-3000:]
    assert "127.0.0.1" in log
    assert PASSWORD not in log, [line for line in log.splitlines() if PASSWORD in line][:3]


def test_init_errors(world, pg):
    # a connection string libpq does not take fails init with the option's
    # name only; a wrong port fails with the host and cause
    bad = pg_component("pgopt", "host=127.0.0.1 bogus_option=" + PASSWORD)
    bad = bad.replace("spec:\n", "spec:\n  ignoreErrors: true\n")
    refused = pg_component("pgport", "host=127.0.0.1 port=%d user=postgres password=%s" % (bc.free_port(), PASSWORD),
                           timeout="2s")
    refused = refused.replace("spec:\n", "spec:\n  ignoreErrors: true\n")
    d = world.daprd([bad, refused])
    d.stop()
    log = d.log_text()
    assert 'connectionString: invalid connection option' in log and "bogus_option" in log, log[-3000:]
    assert "failed to ping the DB: cannot connect to PostgreSQL" in log, log[-3000:]
    assert PASSWORD not in log
