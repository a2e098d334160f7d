// Compatibility test: service invocation driven by the Dapr JavaScript SDK
// (@dapr/dapr, HTTP mode) through two of our daprd sidecars.
//
//   SDK --HTTP--> daprd "checkout" (no app) --internal port--> daprd "orders"
//                                                      --app port--> echo app
//
// The echo app (a node http server inside this process) answers every
// request with what it received: method, url, headers and body as JSON;
// /status/NNN answers status NNN, /text answers plain text.  Both sidecars
// find each other through the SQLite name resolver (a Configuration file
// selects it), so the test covers resolve, the sidecar-to-sidecar hop and
// the app channel, as well as the orders sidecar calling its own app.
//
// Environment (t/sdk-js/run.sh sets both under make check):
//   DAPRD                   the daprd binary
//   DAPR_TEST_PLUGINS_PATH  colon-separated folders holding the plugin .so
//                           files; must include nameresolution-sqlite
//
// Run by hand from a folder where @dapr/dapr is installed:
//   DAPRD=... DAPR_TEST_PLUGINS_PATH=... node --test invoke.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { CommunicationProtocolEnum, DaprClient, HttpMethod, LogLevel } from "@dapr/dapr";

const START_TIMEOUT_MS = 20000; // each sidecar must be ready by then
const MESH_TIMEOUT_MS = 20000; // checkout must reach orders by then
const STOP_TIMEOUT_MS = 10000; // SIGTERM, then SIGKILL after this
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

// The SDK would pick these up from the environment; this test names the
// sidecar explicitly and starts daprd without API tokens.
for (const v of ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "APP_API_TOKEN"])
  delete process.env[v];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

function timeout(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return { promise: p, cancel: () => clearTimeout(timer) };
}

// ---- the echo app -------------------------------------------------------------

function startEchoApp() {
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const status = /^\/status\/(\d{3})(\?|$)/.exec(req.url);
      if (status) {
        res.writeHead(Number(status[1]), { "Content-Type": "application/json" });
        res.end(JSON.stringify({ appSays: `status ${status[1]} as asked`, url: req.url }));
        return;
      }
      if (req.url.startsWith("/text")) {
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.end("plain answer from orders");
        return;
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(
        JSON.stringify({
          method: req.method,
          url: req.url,
          headers: req.headers, // node lower-cases the names
          body: body.toString("utf8"),
          bodyBase64: body.toString("base64"),
        }),
      );
    });
  });
  return new Promise((resolve, reject) => {
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

// ---- daprd processes ----------------------------------------------------------

class Daprd {
  constructor(appId, tmp, appPort) {
    this.appId = appId;
    this.tmp = tmp;
    this.appPort = appPort;
    this.log = "";
    this.proc = null;
    this.exited = null; // resolves to a description once the process is gone
  }

  start(port) {
    const daprd = process.env.DAPRD;
    assert.ok(daprd, "DAPRD must name the daprd binary");
    const args = ["--app-id", this.appId];
    if (this.appPort) args.push("--app-port", String(this.appPort));
    args.push(
      "--dapr-http-port", String(port),
      "--dapr-internal-grpc-port", "0",
      "--dapr-listen-addresses", "127.0.0.1",
      "--resources-path", path.join(this.tmp, "resources"),
      "--config", path.join(this.tmp, "config.yaml"),
    );
    for (const dir of (process.env.DAPR_TEST_PLUGINS_PATH || "").split(":"))
      if (dir) args.push("--plugins-dir", dir);
    // A private HOME: nothing from the user's ~/.dapr may leak in.
    const env = { ...process.env, HOME: path.join(this.tmp, "home") };
    delete env.NAMESPACE;
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

  tail(lines = 40) {
    return `---- daprd ${this.appId} log ----\n` + this.log.split("\n").slice(-lines).join("\n");
  }

  running() {
    return this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  // SIGTERM, then SIGKILL if it has not gone after STOP_TIMEOUT_MS.
  async stop() {
    if (!this.running()) return;
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

  // Start on a free port and wait until ready() holds.  A free port can be
  // taken between closing it and daprd binding it: retry on a bind failure.
  async startReady(ready) {
    let lastFailure = "";
    for (let attempt = 0; attempt < 3; attempt++) {
      this.start(await freePort());
      const limit = timeout(START_TIMEOUT_MS, `daprd ${this.appId} readiness`);
      let outcome;
      try {
        outcome = await Promise.race([
          ready(this).then(() => "ready"),
          this.exited.then((how) => `daprd ${this.appId} ${how}`),
          limit.promise,
        ]);
      } catch (e) {
        await this.stop();
        throw new Error(`${e.message}\n${this.tail()}`);
      } finally {
        limit.cancel();
      }
      if (outcome === "ready") return;
      lastFailure = outcome;
      if (!/address already in use|EADDRINUSE|bind/i.test(this.log))
        throw new Error(`${lastFailure} before it was ready\n${this.tail()}`);
    }
    throw new Error(`${lastFailure} three times\n${this.tail()}`);
  }
}

// GET /v1.0/healthz until 204 (for orders: once its app port accepts).
async function healthz(d) {
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${d.port}/v1.0/healthz`);
      await res.arrayBuffer();
      if (res.status === 204) return;
    } catch {
      // not listening yet
    }
    if (!d.running()) return; // startReady sees the exit
    await sleep(100);
  }
}

function sdkClient(port) {
  return new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: String(port),
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    logger: { level: LogLevel.Error },
  });
}

// The SDK turns every non-2xx/3xx answer into Error(JSON.stringify({error,
// error_msg, status})), error_msg being the body as text.
async function sdkRejection(promise) {
  let caught = null;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof Error, `expected the SDK to throw, got ${caught}`);
  const outer = JSON.parse(caught.message);
  let body;
  try {
    body = JSON.parse(outer.error_msg);
  } catch {
    body = outer.error_msg;
  }
  return { status: outer.status, statusText: outer.error, text: outer.error_msg, body };
}

// ---- the suite ----------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dapr-jsinvoke-"));
let app = null;
let orders = null;
let checkout = null;
let client = null; // talks to checkout
let ordersClient = null; // talks to orders (self-invocation)

process.on("exit", () => {
  for (const d of [orders, checkout]) if (d && d.running()) d.proc.kill("SIGKILL");
});

before(async () => {
  fs.mkdirSync(path.join(tmp, "resources"));
  fs.mkdirSync(path.join(tmp, "home"));
  fs.writeFileSync(
    path.join(tmp, "config.yaml"),
    [
      "apiVersion: dapr.io/v1alpha1",
      "kind: Configuration",
      "metadata:",
      "  name: jsinvoke",
      "spec:",
      "  nameResolution:",
      "    component: sqlite",
      "    configuration:",
      `      connectionString: ${JSON.stringify(path.join(tmp, "nr.db"))}`,
      "      updateInterval: 2s",
      "",
    ].join("\n"),
  );

  app = await startEchoApp();
  orders = new Daprd("orders", tmp, app.address().port);
  await orders.startReady(healthz);
  checkout = new Daprd("checkout", tmp, 0);
  await checkout.startReady(healthz);

  client = sdkClient(checkout.port);
  ordersClient = sdkClient(orders.port);
  await client.start();
  await ordersClient.start();

  // orders announces itself to the resolver in the background: wait,
  // bounded, until checkout can reach it, so the tests below see a settled
  // mesh.  Plain fetch, not the SDK, to keep the tests' view first-hand.
  const deadline = Date.now() + MESH_TIMEOUT_MS;
  let last = "";
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${checkout.port}/v1.0/invoke/orders/method/ping`);
    last = `${res.status} ${await res.text()}`;
    if (res.status === 200) break;
    if (Date.now() > deadline)
      throw new Error(`checkout never reached orders; last answer: ${last}\n${orders.tail()}\n${checkout.tail()}`);
    await sleep(200);
  }
});

after(async () => {
  for (const c of [client, ordersClient]) if (c) await c.stop().catch(() => {});
  await Promise.all([checkout?.stop(), orders?.stop()]);
  if (app) await new Promise((r) => app.close(r));
  fs.rmSync(tmp, { recursive: true, force: true });
});

// What every request that reached the app through checkout must show.
function assertFromCheckout(got) {
  assert.equal(typeof got, "object", `the SDK parses the app's JSON, got ${JSON.stringify(got)}`);
  assert.equal(got.headers["dapr-caller-app-id"], "checkout", JSON.stringify(got.headers));
  assert.equal(got.headers["dapr-callee-app-id"], "orders", JSON.stringify(got.headers));
  assert.match(got.headers.traceparent ?? "", TRACEPARENT, JSON.stringify(got.headers));
  assert.match(got.headers["user-agent"] ?? "", /^dapr-sdk-js\//, "the SDK's user-agent reaches the app");
  assert.equal(got.headers["dapr-app-id"], undefined, "dapr-app-id is not forwarded");
}

describe("invoke from checkout to orders", () => {
  test("POST neworder with a JSON object", async () => {
    const got = await client.invoker.invoke("orders", "neworder", HttpMethod.POST, { id: 1 });
    assertFromCheckout(got);
    assert.equal(got.method, "POST");
    assert.equal(got.url, "/neworder");
    assert.deepEqual(JSON.parse(got.body), { id: 1 });
    assert.equal(got.headers["content-type"], "application/json");
    assert.equal(got.headers["content-length"], String(Buffer.byteLength(got.body)));
    // Across sidecars daprd says who the original client was.
    assert.equal(got.headers["x-forwarded-for"], "127.0.0.1", JSON.stringify(got.headers));
  });

  test("GET with a query string and no body", async () => {
    const got = await client.invoker.invoke("orders", "orders/42?expand=items&note=a%20b&x=", HttpMethod.GET);
    assertFromCheckout(got);
    assert.equal(got.method, "GET");
    assert.equal(got.url, "/orders/42?expand=items&note=a%20b&x=");
    assert.equal(got.body, "");
    assert.equal(got.headers["content-type"], undefined);
  });

  test("PUT with a query string and custom headers", async () => {
    const got = await client.invoker.invoke("orders", "orders/42?version=3", HttpMethod.PUT, { id: 42, qty: 3 }, {
      headers: { "X-Order-Source": "web", "x-tenant": "acme corp" },
    });
    assertFromCheckout(got);
    assert.equal(got.method, "PUT");
    assert.equal(got.url, "/orders/42?version=3");
    assert.deepEqual(JSON.parse(got.body), { id: 42, qty: 3 });
    assert.equal(got.headers["x-order-source"], "web");
    assert.equal(got.headers["x-tenant"], "acme corp");
  });

  test("DELETE with a query string and no body", async () => {
    const del = await client.invoker.invoke("orders", "orders/7?force=true", HttpMethod.DELETE);
    assertFromCheckout(del);
    assert.equal(del.method, "DELETE");
    assert.equal(del.url, "/orders/7?force=true");
    assert.equal(del.body, "");
  });

  test("client-supplied dapr-caller-app-id and dapr-callee-app-id are replaced", async () => {
    const got = await client.invoker.invoke("orders", "neworder", HttpMethod.POST, { id: 2 }, {
      headers: { "dapr-caller-app-id": "mallory", "dapr-callee-app-id": "someone-else" },
    });
    assertFromCheckout(got);
  });

  test("a text body and a custom Content-Type go through unchanged", async () => {
    const text = await client.invoker.invoke("orders", "notes", HttpMethod.POST, "grüße ✓ plain");
    assert.equal(text.headers["content-type"], "text/plain");
    assert.equal(text.body, "grüße ✓ plain");

    const xml = "<order id='3'/>";
    const got = await client.invoker.invoke("orders", "notes", HttpMethod.POST, xml, {
      headers: { "Content-Type": "application/xml" },
    });
    assert.equal(got.headers["content-type"], "application/xml");
    assert.equal(got.body, xml);
  });

  test("binary and large bodies arrive byte for byte", async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const bin = await client.invoker.invoke("orders", "blob", HttpMethod.POST, bytes, {
      headers: { "Content-Type": "application/octet-stream" },
    });
    assert.equal(bin.headers["content-type"], "application/octet-stream");
    assert.equal(bin.bodyBase64, bytes.toString("base64"));

    const big = { items: Array.from({ length: 20000 }, (_, i) => ({ i, name: `item-${i}` })) };
    const got = await client.invoker.invoke("orders", "bulk", HttpMethod.POST, big);
    assert.deepEqual(JSON.parse(got.body), big);
  });

  test("a plain text answer comes back as a string", async () => {
    assert.equal(await client.invoker.invoke("orders", "text", HttpMethod.GET), "plain answer from orders");
  });

  test("parallel calls all reach the app", async () => {
    const calls = Array.from({ length: 25 }, (_, i) =>
      client.invoker.invoke("orders", `parallel/${i}?n=${i}`, HttpMethod.POST, { i }),
    );
    const got = await Promise.all(calls);
    got.forEach((g, i) => {
      assert.equal(g.url, `/parallel/${i}?n=${i}`);
      assert.deepEqual(JSON.parse(g.body), { i });
    });
  });
});

describe("errors as the SDK surfaces them", () => {
  test("an app's 404 comes back unchanged, not as a sidecar error", async () => {
    const e = await sdkRejection(client.invoker.invoke("orders", "status/404?why=missing", HttpMethod.GET));
    assert.equal(e.status, 404);
    assert.equal(e.statusText, "Not Found");
    assert.deepEqual(e.body, { appSays: "status 404 as asked", url: "/status/404?why=missing" });
  });

  test("an app's 500 comes back unchanged", async () => {
    const e = await sdkRejection(client.invoker.invoke("orders", "status/500", HttpMethod.POST, { id: 5 }));
    assert.equal(e.status, 500);
    assert.deepEqual(e.body, { appSays: "status 500 as asked", url: "/status/500" });
  });

  test("an unknown app id is ERR_DIRECT_INVOKE 500", async () => {
    const e = await sdkRejection(client.invoker.invoke("nosuchapp", "neworder", HttpMethod.POST, { id: 1 }));
    assert.equal(e.status, 500, e.text);
    assert.equal(e.body.errorCode, "ERR_DIRECT_INVOKE", e.text);
    assert.match(e.body.message, /nosuchapp/);
  });

  test("checkout calling itself has no app: ERR_DIRECT_INVOKE 500", async () => {
    const e = await sdkRejection(client.invoker.invoke("checkout", "neworder", HttpMethod.GET));
    assert.equal(e.status, 500, e.text);
    assert.equal(e.body.errorCode, "ERR_DIRECT_INVOKE", e.text);
  });
});

describe("self-invocation through the orders sidecar", () => {
  test("POST and GET reach the own app with caller = callee = orders", async () => {
    const post = await ordersClient.invoker.invoke("orders", "neworder?src=self", HttpMethod.POST, { id: 9 }, {
      headers: { "x-self": "yes" },
    });
    assert.equal(post.method, "POST");
    assert.equal(post.url, "/neworder?src=self");
    assert.deepEqual(JSON.parse(post.body), { id: 9 });
    assert.equal(post.headers["x-self"], "yes");
    assert.equal(post.headers["dapr-caller-app-id"], "orders");
    assert.equal(post.headers["dapr-callee-app-id"], "orders");
    assert.match(post.headers.traceparent ?? "", TRACEPARENT);

    const get = await ordersClient.invoker.invoke("orders", "orders/1?fields=id", HttpMethod.GET);
    assert.equal(get.method, "GET");
    assert.equal(get.url, "/orders/1?fields=id");
  });

  test("the app's 404 comes back through the own sidecar too", async () => {
    const e = await sdkRejection(ordersClient.invoker.invoke("orders", "status/404", HttpMethod.DELETE));
    assert.equal(e.status, 404);
    assert.equal(e.body.appSays, "status 404 as asked");
  });

  test("orders can call an unknown app and gets ERR_DIRECT_INVOKE", async () => {
    const e = await sdkRejection(ordersClient.invoker.invoke("ghost", "x", HttpMethod.GET));
    assert.equal(e.status, 500, e.text);
    assert.equal(e.body.errorCode, "ERR_DIRECT_INVOKE", e.text);
  });
});

// Last on purpose: a body that daprd forwards without Content-Length stays
// on the keep-alive connection and is read as the start of the next request
// (seen as a 501 from the peer daprd, a 400 from the app), which would make
// unrelated tests after this one fail too.
describe("bodies on methods other than POST and PUT", () => {
  test("PATCH with a JSON body, across sidecars and to the own app", async () => {
    for (const [c, caller] of [[client, "checkout"], [ordersClient, "orders"]]) {
      const got = await c.invoker.invoke("orders", "orders/7?op=merge", HttpMethod.PATCH, { qty: 9 });
      assert.equal(got.method, "PATCH");
      assert.equal(got.url, "/orders/7?op=merge");
      assert.equal(got.headers["dapr-caller-app-id"], caller);
      assert.equal(got.headers["content-length"], "9", `via ${caller}: ${JSON.stringify(got.headers)}`);
      assert.deepEqual(JSON.parse(got.body || "null"), { qty: 9 }, `via ${caller}`);
    }
  });

  test("DELETE with a JSON body, across sidecars and to the own app", async () => {
    for (const [c, caller] of [[client, "checkout"], [ordersClient, "orders"]]) {
      const got = await c.invoker.invoke("orders", "orders/8", HttpMethod.DELETE, { reason: "dup" });
      assert.equal(got.method, "DELETE");
      assert.equal(got.url, "/orders/8");
      assert.deepEqual(JSON.parse(got.body || "null"), { reason: "dup" }, `via ${caller}`);
    }
  });

  test("the connections are still in step afterwards", async () => {
    for (const c of [client, ordersClient]) {
      const got = await c.invoker.invoke("orders", "after", HttpMethod.POST, { last: true });
      assert.deepEqual(JSON.parse(got.body), { last: true });
    }
  });
});
