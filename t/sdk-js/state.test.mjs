// Compatibility test: the Dapr JavaScript SDK (@dapr/dapr, HTTP mode) as the
// client of our daprd.  The test starts daprd itself on 127.0.0.1 and a free
// port with a temporary resources folder holding two state stores (in-memory
// and SQLite), lets the SDK decide readiness its own way (it polls
// GET /v1.0/metadata), and checks what the SDK hands back to an application.
//
// Environment (t/sdk-js/run.sh sets both under make check):
//   DAPRD                   the daprd binary
//   DAPR_TEST_PLUGINS_PATH  colon-separated folders holding the plugin .so files
//
// Run by hand from a folder where @dapr/dapr is installed:
//   DAPRD=... DAPR_TEST_PLUGINS_PATH=... node --test state.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import {
  CommunicationProtocolEnum,
  DaprClient,
  LogLevel,
  StateConcurrencyEnum,
} from "@dapr/dapr";

const APP_ID = "jssdk";
const MEMORY = "memstore";
const SQLITE = "sqlstore";
const START_TIMEOUT_MS = 20000; // daprd must answer the SDK's poll by then
const STOP_TIMEOUT_MS = 10000; // SIGTERM, then SIGKILL after this

// The SDK would pick these up from the environment; this test names the
// sidecar explicitly and starts daprd without an API token.
for (const v of ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "APP_API_TOKEN"])
  delete process.env[v];

// ---- daprd process ----------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function componentYaml(name, type, metadata = {}) {
  const lines = [
    "apiVersion: dapr.io/v1alpha1",
    "kind: Component",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    `  type: ${type}`,
    "  version: v1",
  ];
  const entries = Object.entries(metadata);
  if (entries.length) {
    lines.push("  metadata:");
    for (const [k, v] of entries) lines.push(`  - name: ${k}`, `    value: ${JSON.stringify(String(v))}`);
  }
  return lines.join("\n") + "\n";
}

class Daprd {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dapr-jssdk-"));
    this.resources = path.join(this.tmp, "resources");
    fs.mkdirSync(this.resources);
    fs.writeFileSync(path.join(this.resources, "memory.yaml"), componentYaml(MEMORY, "state.in-memory"));
    fs.writeFileSync(
      path.join(this.resources, "sqlite.yaml"),
      componentYaml(SQLITE, "state.sqlite", { connectionString: path.join(this.tmp, "state.db") }),
    );
    this.log = "";
    this.proc = null;
    this.exited = null; // resolves to a description once the process is gone
  }

  start(port) {
    const daprd = process.env.DAPRD;
    assert.ok(daprd, "DAPRD must name the daprd binary");
    const args = [
      "--app-id", APP_ID,
      "--dapr-http-port", String(port),
      "--dapr-listen-addresses", "127.0.0.1",
      "--resources-path", this.resources,
    ];
    for (const dir of (process.env.DAPR_TEST_PLUGINS_PATH || "").split(":"))
      if (dir) args.push("--plugins-dir", dir);
    const env = { ...process.env };
    delete env.DAPR_API_TOKEN;
    delete env.APP_API_TOKEN;
    this.log = "";
    this.port = port;
    this.proc = spawn(daprd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk) => {
      this.log += chunk.toString();
      if (this.log.length > 200000) this.log = this.log.slice(-100000);
    };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    this.exited = new Promise((resolve) => {
      this.proc.on("error", (e) => resolve(`could not be started: ${e.message}`));
      this.proc.on("exit", (code, sig) => resolve(`exited (code ${code}, signal ${sig})`));
    });
  }

  tail(lines = 60) {
    return this.log.split("\n").slice(-lines).join("\n");
  }

  // SIGTERM, then SIGKILL if it has not gone after STOP_TIMEOUT_MS.
  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      let timer;
      const killed = new Promise((resolve) => {
        timer = setTimeout(() => {
          this.proc.kill("SIGKILL");
          resolve("killed");
        }, STOP_TIMEOUT_MS);
      });
      const how = await Promise.race([this.exited, killed]);
      clearTimeout(timer);
      if (how === "killed") await this.exited;
    }
  }

  cleanup() {
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

function timeout(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return { promise: p, cancel: () => clearTimeout(timer) };
}

// The SDK turns every non-2xx/3xx answer into Error(JSON.stringify({error,
// error_msg, status})), error_msg being daprd's body as text.
function daprError(e) {
  assert.ok(e instanceof Error, `expected an Error, got ${e}`);
  const outer = JSON.parse(e.message);
  let body = null;
  try {
    body = JSON.parse(outer.error_msg);
  } catch {
    body = outer.error_msg;
  }
  return { status: outer.status, body };
}

async function rejectsWith(promise, status, errorCode) {
  let caught = null;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, `expected the SDK to throw (HTTP ${status} ${errorCode})`);
  const { status: got, body } = daprError(caught);
  assert.equal(got, status, `status of ${caught.message}`);
  assert.equal(body.errorCode, errorCode, `errorCode of ${caught.message}`);
  return body;
}

// save() and delete() catch errors and hand them back as {error}.
function assertSaveError(res, status, errorCode) {
  assert.ok(res && res.error, `expected {error}, got ${JSON.stringify(res)}`);
  const { status: got, body } = daprError(res.error);
  assert.equal(got, status, `status of ${res.error.message}`);
  assert.equal(body.errorCode, errorCode, `errorCode of ${res.error.message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the suite --------------------------------------------------------------

const daprd = new Daprd();
let client = null;

// Kill daprd if this process goes away without running the after hook.
process.on("exit", () => {
  if (daprd.proc && daprd.proc.exitCode === null) daprd.proc.kill("SIGKILL");
});

before(async () => {
  // A free port can be taken between closing it and daprd binding it:
  // try again with another one when daprd exits early.
  let lastFailure = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    daprd.start(await freePort());
    const c = new DaprClient({
      daprHost: "127.0.0.1",
      daprPort: String(daprd.port),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      // The SDK logs each failed save/delete at level Error, the expected
      // ones (etag mismatch, unknown store) included.
      logger: { level: LogLevel.Error },
    });
    const limit = timeout(START_TIMEOUT_MS, "daprd readiness (GET /v1.0/metadata)");
    try {
      const outcome = await Promise.race([
        c.start().then(() => "ready"),
        daprd.exited.then((how) => `daprd ${how}`),
        limit.promise,
      ]);
      if (outcome === "ready") {
        client = c;
        return;
      }
      lastFailure = outcome;
    } catch (e) {
      await daprd.stop();
      throw new Error(`${e.message}\n---- daprd log ----\n${daprd.tail()}`);
    } finally {
      limit.cancel();
    }
    const log = daprd.tail();
    if (!/address already in use|EADDRINUSE|bind/i.test(log))
      throw new Error(`${lastFailure} before it was ready\n---- daprd log ----\n${log}`);
  }
  throw new Error(`${lastFailure} three times\n---- daprd log ----\n${daprd.tail()}`);
});

after(async () => {
  if (client) await client.stop().catch(() => {});
  await daprd.stop();
  daprd.cleanup();
});

describe("sidecar", () => {
  test("metadata.get() reports the app id and both state stores", async () => {
    const md = await client.metadata.get();
    assert.equal(typeof md, "object", `metadata is parsed JSON, got ${typeof md}`);
    assert.equal(md.id, APP_ID);
    const comps = Object.fromEntries((md.components || []).map((c) => [c.name, c]));
    assert.ok(comps[MEMORY], `components: ${JSON.stringify(md.components)}`);
    assert.ok(comps[SQLITE], `components: ${JSON.stringify(md.components)}`);
    assert.equal(comps[MEMORY].type, "state.in-memory");
    assert.equal(comps[SQLITE].type, "state.sqlite");
    assert.equal(comps[MEMORY].version, "v1");
    for (const name of [MEMORY, SQLITE]) {
      const caps = comps[name].capabilities || [];
      for (const cap of ["ETAG", "TRANSACTIONAL"])
        assert.ok(caps.includes(cap), `${name} capabilities ${JSON.stringify(caps)} lack ${cap}`);
    }
  });

  test("health.isHealthy() is true", async () => {
    assert.equal(await client.health.isHealthy(), true);
  });

  test("metadata.set() shows up under extended", async () => {
    assert.equal(await client.metadata.set("jssdkAttr", "some value"), true);
    const md = await client.metadata.get();
    assert.equal(md.extended?.jssdkAttr, "some value", JSON.stringify(md.extended));
  });
});

for (const store of [MEMORY, SQLITE]) {
  describe(`state API on ${store}`, { timeout: 60000 }, () => {
    // Keys are unique per store so the sub-tests do not depend on each other.
    const k = (name) => `${store}-${name}`;

    // The SDK's get() returns only the parsed body; etags come from getBulk.
    async function etagOf(key) {
      const [item] = await client.state.getBulk(store, [key]);
      assert.equal(item.key, key);
      assert.equal(typeof item.etag, "string", `bulk item ${JSON.stringify(item)}`);
      assert.ok(item.etag.length > 0);
      return item.etag;
    }

    test("save one item and get it back parsed", async () => {
      const value = { name: "Ada", tags: ["x", "y"], n: 3, ok: true, nested: { z: null } };
      assert.deepEqual(await client.state.save(store, [{ key: k("one"), value }]), {});
      assert.deepEqual(await client.state.get(store, k("one")), value);
    });

    test("values of every JSON type round-trip", async () => {
      const items = [
        { key: k("str"), value: "hello" },
        { key: k("num"), value: 42.5 },
        { key: k("bool"), value: false },
        { key: k("arr"), value: [1, "two", { three: 3 }] },
        { key: k("unicode"), value: "grüße ✓ 日本" },
      ];
      assert.deepEqual(await client.state.save(store, items), {});
      for (const it of items) assert.deepEqual(await client.state.get(store, it.key), it.value, it.key);
    });

    test("get of a missing key gives the SDK's empty answer", async () => {
      // daprd answers 204 with no body; the SDK hands back the empty text.
      assert.equal(await client.state.get(store, k("never-saved")), "");
    });

    test("save several items, getBulk returns them in order with etags", async () => {
      const items = [1, 2, 3].map((i) => ({ key: k(`bulk${i}`), value: { i } }));
      assert.deepEqual(await client.state.save(store, items), {});
      const keys = [k("bulk3"), k("bulk-missing"), k("bulk1"), k("bulk2")];
      const got = await client.state.getBulk(store, keys);
      assert.ok(Array.isArray(got), `getBulk gave ${JSON.stringify(got)}`);
      assert.deepEqual(got.map((x) => x.key), keys);
      assert.deepEqual(got[0].data, { i: 3 });
      assert.deepEqual(got[2].data, { i: 1 });
      assert.deepEqual(got[3].data, { i: 2 });
      assert.equal(got[1].data, undefined, `missing key: ${JSON.stringify(got[1])}`);
      assert.equal(got[1].error, undefined, `missing key: ${JSON.stringify(got[1])}`);
      for (const i of [0, 2, 3]) assert.ok(typeof got[i].etag === "string" && got[i].etag.length > 0);
      assert.deepEqual(await client.state.getBulk(store, []), []);
    });

    test("getBulk with parallelism and metadata options", async () => {
      const got = await client.state.getBulk(store, [k("bulk1"), k("bulk2")], {
        parallelism: 2,
        metadata: { unusedHint: "x" },
      });
      assert.deepEqual(got.map((x) => x.data), [{ i: 1 }, { i: 2 }]);
    });

    test("save with the current etag succeeds and changes the etag", async () => {
      const key = k("etag");
      assert.deepEqual(await client.state.save(store, [{ key, value: "v1" }]), {});
      const e1 = await etagOf(key);
      assert.deepEqual(await client.state.save(store, [{ key, value: "v2", etag: e1 }]), {});
      assert.equal(await client.state.get(store, key), "v2");
      const e2 = await etagOf(key);
      assert.notEqual(e2, e1);

      // The old etag no longer matches: 409 ERR_STATE_SAVE, value unchanged.
      const res = await client.state.save(store, [{ key, value: "v3", etag: e1 }]);
      assertSaveError(res, 409, "ERR_STATE_SAVE");
      assert.equal(await client.state.get(store, key), "v2");
    });

    test("save with an etag on a missing key is an etag mismatch", async () => {
      const key = k("etag-missing");
      const e = await (async () => {
        await client.state.save(store, [{ key: k("etag-donor"), value: 1 }]);
        return etagOf(k("etag-donor"));
      })();
      assertSaveError(await client.state.save(store, [{ key, value: 1, etag: e }]), 409, "ERR_STATE_SAVE");
      assert.equal(await client.state.get(store, key), "");
    });

    test("first-write concurrency: only the first save without etag wins", async () => {
      const key = k("first-write");
      const opts = { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE };
      assert.deepEqual(await client.state.save(store, [{ key, value: "first", options: opts }]), {});
      const res = await client.state.save(store, [{ key, value: "second", options: opts }]);
      assertSaveError(res, 409, "ERR_STATE_SAVE");
      assert.equal(await client.state.get(store, key), "first");

      // first-write with the current etag is allowed.
      const e = await etagOf(key);
      assert.deepEqual(await client.state.save(store, [{ key, value: "third", etag: e, options: opts }]), {});
      assert.equal(await client.state.get(store, key), "third");

      // last-write (explicit) overwrites without an etag.
      const lw = { concurrency: StateConcurrencyEnum.CONCURRENCY_LAST_WRITE };
      assert.deepEqual(await client.state.save(store, [{ key, value: "fourth", options: lw }]), {});
      assert.equal(await client.state.get(store, key), "fourth");
    });

    test("ttlInSeconds per item and per request expires items", async () => {
      // 2 s, not 1: the SQLite store keeps expiry times in whole seconds, so
      // an item saved late in a second with ttlInSeconds 1 may be gone at
      // once, before the reads below that expect it.
      const perItem = k("ttl-item");
      const perRequest = k("ttl-request");
      const forever = k("ttl-none");
      assert.deepEqual(
        await client.state.save(store, [
          { key: perItem, value: "short", metadata: { ttlInSeconds: "2" } },
          { key: forever, value: "stays" },
        ]),
        {},
      );
      // Request-level metadata goes to the query string as metadata.ttlInSeconds.
      assert.deepEqual(
        await client.state.save(store, [{ key: perRequest, value: "short too" }], {
          metadata: { ttlInSeconds: "2" },
        }),
        {},
      );
      assert.equal(await client.state.get(store, perItem), "short");
      assert.equal(await client.state.get(store, perRequest), "short too");

      // Bulk get carries the expiry time as item metadata.
      const [withTtl, without] = await client.state.getBulk(store, [perItem, forever]);
      assert.match(
        withTtl.metadata?.ttlExpireTime ?? "",
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/,
        JSON.stringify(withTtl),
      );
      assert.equal(without.metadata?.ttlExpireTime, undefined, JSON.stringify(without));

      // Poll (bounded) until both are gone; TTL is 2 s, allow 10 s.
      const deadline = Date.now() + 10000;
      let a, b;
      do {
        await sleep(250);
        a = await client.state.get(store, perItem);
        b = await client.state.get(store, perRequest);
      } while ((a !== "" || b !== "") && Date.now() < deadline);
      assert.equal(a, "", "item with per-item TTL did not expire");
      assert.equal(b, "", "item with request TTL did not expire");
      assert.equal(await client.state.get(store, forever), "stays");
    });

    test("a non-integer ttlInSeconds is rejected", async () => {
      const res = await client.state.save(store, [{ key: k("ttl-bad"), value: 1, metadata: { ttlInSeconds: "soon" } }]);
      assert.ok(res.error, "save with ttlInSeconds=soon should fail");
      const { status, body } = daprError(res.error);
      assert.ok(status >= 400, `status ${status}`);
      assert.equal(body.errorCode, "ERR_STATE_SAVE");
      assert.equal(await client.state.get(store, k("ttl-bad")), "");
    });

    test("delete without etag, with a stale etag and with the current etag", async () => {
      const key = k("del");
      await client.state.save(store, [{ key, value: "x" }]);
      assert.deepEqual(await client.state.delete(store, key), {});
      assert.equal(await client.state.get(store, key), "");
      // Deleting a missing key without an etag is fine.
      assert.deepEqual(await client.state.delete(store, key), {});

      await client.state.save(store, [{ key, value: "y" }]);
      const e1 = await etagOf(key);
      await client.state.save(store, [{ key, value: "z" }]);
      const e2 = await etagOf(key);
      assert.notEqual(e1, e2);

      const res = await client.state.delete(store, key, { etag: e1 });
      assertSaveError(res, 409, "ERR_STATE_DELETE");
      assert.equal(await client.state.get(store, key), "z");

      assert.deepEqual(await client.state.delete(store, key, { etag: e2 }), {});
      assert.equal(await client.state.get(store, key), "");

      // An etag on a key that is gone is a mismatch too.
      assertSaveError(await client.state.delete(store, key, { etag: e2 }), 409, "ERR_STATE_DELETE");
    });

    test("transaction: upsert and delete apply together", async () => {
      const keep = k("tx-keep");
      const gone = k("tx-gone");
      const fresh = k("tx-new");
      await client.state.save(store, [
        { key: keep, value: "old" },
        { key: gone, value: "doomed" },
      ]);
      // No transaction-level metadata: the SDK sends "metadata": null.
      await client.state.transaction(store, [
        { operation: "upsert", request: { key: keep, value: { v: "new" } } },
        { operation: "upsert", request: { key: fresh, value: [1, 2] } },
        { operation: "delete", request: { key: gone } },
      ]);
      assert.deepEqual(await client.state.get(store, keep), { v: "new" });
      assert.deepEqual(await client.state.get(store, fresh), [1, 2]);
      assert.equal(await client.state.get(store, gone), "");
    });

    test("transaction with metadata and etags", async () => {
      const a = k("tx-etag-a");
      const b = k("tx-etag-b");
      await client.state.save(store, [{ key: a, value: 1 }, { key: b, value: 2 }]);
      const ea = await etagOf(a);
      const eb = await etagOf(b);
      await client.state.transaction(
        store,
        [
          { operation: "upsert", request: { key: a, value: 10, etag: ea } },
          { operation: "delete", request: { key: b, etag: eb } },
        ],
        { someHint: "x" },
      );
      assert.equal(await client.state.get(store, a), 10);
      assert.equal(await client.state.get(store, b), "");
    });

    test("transaction with a stale etag fails as a whole", async () => {
      const a = k("tx-atomic-a");
      const b = k("tx-atomic-b");
      await client.state.save(store, [{ key: a, value: "a0" }, { key: b, value: "b0" }]);
      const stale = await etagOf(b);
      await client.state.save(store, [{ key: b, value: "b1" }]);
      // transaction() does not catch: the SDK throws.
      await rejectsWith(
        client.state.transaction(store, [
          { operation: "upsert", request: { key: a, value: "a1" } },
          { operation: "upsert", request: { key: b, value: "b2", etag: stale } },
        ]),
        500,
        "ERR_STATE_TRANSACTION",
      );
      assert.equal(await client.state.get(store, a), "a0");
      assert.equal(await client.state.get(store, b), "b1");
    });

    test("transaction with an unknown operation is rejected", async () => {
      await rejectsWith(
        client.state.transaction(store, [{ operation: "merge", request: { key: k("tx-bad"), value: 1 } }]),
        400,
        "ERR_NOT_SUPPORTED_STATE_OPERATION",
      );
      assert.equal(await client.state.get(store, k("tx-bad")), "");
    });
  });
}

describe("query on the in-memory store", () => {
  const people = [
    { key: "q-1", value: { name: "ann", team: "dev", age: 31 } },
    { key: "q-2", value: { name: "bob", team: "ops", age: 45 } },
    { key: "q-3", value: { name: "cid", team: "dev", age: 27 } },
    { key: "q-4", value: { name: "dee", team: "qa", age: 38 } },
  ];

  before(async () => {
    assert.deepEqual(await client.state.save(MEMORY, people), {});
  });

  test("EQ filter with sort returns parsed data and keys without prefix", async () => {
    const res = await client.state.query(MEMORY, {
      filter: { EQ: { team: "dev" } },
      sort: [{ key: "age", order: "DESC" }],
      page: { limit: 10 },
    });
    assert.ok(Array.isArray(res.results), JSON.stringify(res));
    assert.deepEqual(res.results.map((r) => r.key), ["q-1", "q-3"]);
    assert.deepEqual(res.results[0].data, people[0].value);
    assert.deepEqual(res.results[1].data, people[2].value);
    for (const r of res.results) assert.ok(typeof r.etag === "string" && r.etag.length > 0, JSON.stringify(r));
  });

  test("IN filter, ascending sort and paging with a token", async () => {
    const q = {
      filter: { IN: { team: ["dev", "ops", "qa"] } },
      sort: [{ key: "name" }],
      page: { limit: 2 },
    };
    const p1 = await client.state.query(MEMORY, q);
    assert.deepEqual(p1.results.map((r) => r.data.name), ["ann", "bob"]);
    assert.ok(typeof p1.token === "string" && p1.token.length > 0, `first page: ${JSON.stringify(p1)}`);
    const p2 = await client.state.query(MEMORY, { ...q, page: { limit: 2, token: p1.token } });
    assert.deepEqual(p2.results.map((r) => r.data.name), ["cid", "dee"]);
  });

  test("a query matching nothing gives the SDK's empty result", async () => {
    // daprd answers 204; the SDK turns the empty body into {results: []}.
    const res = await client.state.query(MEMORY, { filter: { EQ: { team: "nobody" } }, sort: [], page: { limit: 5 } });
    assert.deepEqual(res, { results: [] });
  });
});

describe("errors as the SDK surfaces them", () => {
  test("get from an unknown store throws 400 ERR_STATE_STORE_NOT_FOUND", async () => {
    const body = await rejectsWith(client.state.get("nosuchstore", "k"), 400, "ERR_STATE_STORE_NOT_FOUND");
    assert.match(body.message, /nosuchstore/);
  });

  test("save to an unknown store hands back {error}", async () => {
    assertSaveError(await client.state.save("nosuchstore", [{ key: "k", value: 1 }]), 400, "ERR_STATE_STORE_NOT_FOUND");
  });

  test("getBulk, delete, transaction and query on an unknown store", async () => {
    await rejectsWith(client.state.getBulk("nosuchstore", ["k"]), 400, "ERR_STATE_STORE_NOT_FOUND");
    assertSaveError(await client.state.delete("nosuchstore", "k"), 400, "ERR_STATE_STORE_NOT_FOUND");
    await rejectsWith(
      client.state.transaction("nosuchstore", [{ operation: "upsert", request: { key: "k", value: 1 } }]),
      400,
      "ERR_STATE_STORE_NOT_FOUND",
    );
    await rejectsWith(
      client.state.query("nosuchstore", { filter: { EQ: { a: 1 } }, sort: [], page: { limit: 1 } }),
      400,
      "ERR_STATE_STORE_NOT_FOUND",
    );
  });

  test("a key containing || is rejected", async () => {
    await rejectsWith(client.state.get(MEMORY, "a||b"), 400, "ERR_MALFORMED_REQUEST");
  });
});
