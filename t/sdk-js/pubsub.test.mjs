// Compatibility test: publish and subscribe with the Dapr JavaScript SDK
// (@dapr/dapr, HTTP mode) through our daprd.
//
//   DaprClient --publish--> daprd (pubsub.in-memory "pubsub")
//        --POST route--> DaprServer (the SDK's own HTTP app server, express)
//
// The subscriber app is the SDK's DaprServer: it answers GET /dapr/subscribe
// with the subscriptions registered through server.pubsub.* and turns each
// delivery back into a callback.  So this covers the subscription list the
// SDK writes (v1 route, routes with rules, bulkSubscribe), the CloudEvent
// and bulk envelope it parses, and the statuses it answers with.
//
// Environment (t/sdk-js/run.sh sets both under make check):
//   DAPRD                   the daprd binary
//   DAPR_TEST_PLUGINS_PATH  colon-separated folders holding the plugin .so
//                           files; must include pubsub-memory
//
// Run by hand from a folder where @dapr/dapr is installed:
//   DAPRD=... DAPR_TEST_PLUGINS_PATH=... node --test pubsub.test.mjs

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
  DaprPubSubStatusEnum,
  DaprServer,
  LogLevel,
} from "@dapr/dapr";

const APP_ID = "jspubsub";
const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 10000;
const WAIT_MS = 10000; // for a delivery to arrive

for (const v of ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "APP_API_TOKEN",
                 "DAPR_SERVER_PORT", "DAPR_CLIENT_PORT"])
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

// Poll until check() returns a true value.
async function eventually(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`${what} (waited ${ms} ms)`);
    await sleep(25);
  }
}

// ---- daprd -----------------------------------------------------------------

class Daprd {
  constructor(tmp, appPort) {
    this.tmp = tmp;
    this.appPort = appPort;
    this.log = "";
    this.proc = null;
    this.exited = null;
  }

  start(port) {
    const daprd = process.env.DAPRD;
    assert.ok(daprd, "DAPRD must name the daprd binary");
    const args = [
      "--app-id", APP_ID,
      "--app-port", String(this.appPort),
      "--dapr-http-port", String(port),
      "--dapr-internal-grpc-port", "0",
      "--dapr-listen-addresses", "127.0.0.1",
      "--resources-path", path.join(this.tmp, "resources"),
      "--log-level", "debug",
    ];
    for (const dir of (process.env.DAPR_TEST_PLUGINS_PATH || "").split(":"))
      if (dir) args.push("--plugins-dir", dir);
    const env = { ...process.env, HOME: path.join(this.tmp, "home") };
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

  running() {
    return this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  tail(lines = 60) {
    return "---- daprd log ----\n" + this.log.split("\n").slice(-lines).join("\n");
  }

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
}

// ---- the subscriber (the SDK's DaprServer) --------------------------------------

const received = {}; // topic -> list of {data, headers}
const retried = new Set(); // keys that have answered RETRY once
function record(topic) {
  return async (data, headers) => {
    (received[topic] ||= []).push({ data, headers });
  };
}

function got(topic) {
  return received[topic] || [];
}

// ---- the suite ----------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dapr-jspubsub-"));
let daprd = null;
let server = null;
let client = null;

process.on("exit", () => {
  if (daprd && daprd.running()) daprd.proc.kill("SIGKILL");
});

before(async () => {
  fs.mkdirSync(path.join(tmp, "resources"));
  fs.mkdirSync(path.join(tmp, "home"));
  fs.writeFileSync(
    path.join(tmp, "resources", "pubsub.yaml"),
    ["apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", "  name: pubsub", "spec:",
     "  type: pubsub.in-memory", "  version: v1", ""].join("\n"),
  );
  let lastFailure = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const appPort = await freePort();
    const daprPort = await freePort();
    server = new DaprServer({
      serverHost: "127.0.0.1",
      serverPort: String(appPort),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      clientOptions: {
        daprHost: "127.0.0.1",
        daprPort: String(daprPort),
        communicationProtocol: CommunicationProtocolEnum.HTTP,
      },
      logger: { level: LogLevel.Error },
    });
    // Subscriptions are registered before start(): DaprServer serves them
    // at /dapr/subscribe, which daprd reads once the app port listens.
    await server.pubsub.subscribe("pubsub", "orders", record("orders"));
    await server.pubsub.subscribe("pubsub", "retry-topic", async (data) => {
      (received["retry-topic"] ||= []).push({ data });
      if (!retried.has(data.key)) {
        retried.add(data.key);
        return DaprPubSubStatusEnum.RETRY;
      }
      return DaprPubSubStatusEnum.SUCCESS;
    });
    await server.pubsub.subscribe("pubsub", "drop-topic", async (data) => {
      (received["drop-topic"] ||= []).push({ data });
      return DaprPubSubStatusEnum.DROP;
    });
    await server.pubsub.subscribe("pubsub", "raw-topic", record("raw-topic"), "raw-route",
                                  { rawPayload: "true" });
    await server.pubsub.subscribeWithOptions("pubsub", "routed", {
      route: { rules: [{ match: 'event.type == "special"', path: "/special" }], default: "/plain" },
      callback: async (data, headers) => {
        (received["routed"] ||= []).push({ data, headers });
      },
    });
    await server.pubsub.subscribeBulk("pubsub", "bulk-topic", record("bulk-topic"),
                                      { maxMessagesCount: 5, maxAwaitDurationMs: 200 });

    daprd = new Daprd(tmp, appPort);
    daprd.start(daprPort);
    const limit = timeout(START_TIMEOUT_MS, "DaprServer.start (waits for daprd)");
    let outcome;
    try {
      outcome = await Promise.race([
        server.start().then(() => "ready"),
        daprd.exited.then((how) => `daprd ${how}`),
        limit.promise,
      ]);
    } catch (e) {
      await daprd.stop();
      throw new Error(`${e.message}\n${daprd.tail()}`);
    } finally {
      limit.cancel();
    }
    if (outcome === "ready") break;
    lastFailure = outcome;
    await server.stop().catch(() => {});
    if (!/address already in use|EADDRINUSE|bind/i.test(daprd.log))
      throw new Error(`${lastFailure} before it was ready\n${daprd.tail()}`);
  }
  assert.ok(daprd.running(), `daprd did not start: ${lastFailure}`);
  // daprd is ready (healthz 204) only after it subscribed.
  await eventually(() => /dapr initialized/.test(daprd.log), "daprd initialized");
  client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: String(daprd.port),
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    logger: { level: LogLevel.Error },
  });
});

after(async () => {
  if (server) await server.stop().catch(() => {});
  if (daprd) await daprd.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("subscriptions the SDK declares", () => {
  test("daprd read them from /dapr/subscribe (metadata API)", async () => {
    const md = await client.metadata.get();
    const subs = md.subscriptions.map((s) => `${s.pubsubname}/${s.topic}`).sort();
    assert.deepEqual(subs, [
      "pubsub/bulk-topic", "pubsub/drop-topic", "pubsub/orders", "pubsub/raw-topic",
      "pubsub/retry-topic", "pubsub/routed",
    ]);
    const routed = md.subscriptions.find((s) => s.topic === "routed");
    // The SDK names the paths itself ("/pubsub--routed--special").
    assert.equal(routed.rules.length, 2);
    assert.equal(routed.rules[0].match, 'event.type == "special"');
    assert.ok(routed.rules[0].path.endsWith("special") && !routed.rules[1].match, JSON.stringify(routed.rules));
    assert.ok(routed.rules[1].path.endsWith("plain"), JSON.stringify(routed.rules));
  });
});

describe("publish through DaprClient, receive through DaprServer", () => {
  test("a JSON object", async () => {
    const res = await client.pubsub.publish("pubsub", "orders", { orderId: 42, items: ["a", "b"] });
    assert.deepEqual(res, {});
    const [m] = await eventually(() => got("orders").find((x) => x.data && x.data.orderId === 42) && got("orders"),
                                 "JSON message not received");
    const msg = got("orders").find((x) => x.data.orderId === 42);
    assert.deepEqual(msg.data, { orderId: 42, items: ["a", "b"] });
    assert.equal(msg.headers["content-type"], "application/cloudevents+json");
    assert.equal(msg.headers["pubsubname"], "pubsub");
    assert.ok(m);
  });

  test("a text message", async () => {
    const res = await client.pubsub.publish("pubsub", "orders", "just text");
    assert.deepEqual(res, {});
    await eventually(() => got("orders").some((x) => x.data === "just text"), "text message not received");
  });

  test("with metadata (ttlInSeconds, cloudevent.type) and an explicit content type", async () => {
    const res = await client.pubsub.publish("pubsub", "routed", { kind: "special one" }, {
      metadata: { ttlInSeconds: "60", "cloudevent.type": "special" },
    });
    assert.deepEqual(res, {});
    const res2 = await client.pubsub.publish("pubsub", "routed", "<x>plain</x>", { contentType: "application/xml" });
    assert.deepEqual(res2, {});
    await eventually(() => got("routed").length >= 2, "routed messages not received");
    // The routing rule sent the special one to /special; both reached the
    // callback the SDK registered for both paths.
    const datas = got("routed").map((x) => x.data);
    assert.ok(datas.some((d) => d && d.kind === "special one"), JSON.stringify(datas));
    assert.ok(datas.includes("<x>plain</x>"), JSON.stringify(datas));
  });

  test("a raw payload to a rawPayload subscription", async () => {
    const res = await client.pubsub.publish("pubsub", "raw-topic", { raw: true }, { metadata: { rawPayload: "true" } });
    assert.deepEqual(res, {});
    await eventually(() => got("raw-topic").some((x) => x.data && x.data.raw === true), "raw message not received");
  });

  test("RETRY from the callback redelivers", async () => {
    await client.pubsub.publish("pubsub", "retry-topic", { key: "r1" });
    await eventually(() => got("retry-topic").filter((x) => x.data.key === "r1").length === 2, "no redelivery");
    await sleep(500);
    assert.equal(got("retry-topic").filter((x) => x.data.key === "r1").length, 2);
  });

  test("DROP from the callback is not redelivered", async () => {
    await client.pubsub.publish("pubsub", "drop-topic", { key: "d1" });
    await eventually(() => got("drop-topic").length === 1, "not delivered");
    await sleep(500);
    assert.equal(got("drop-topic").length, 1);
  });

  test("bulk subscribe delivers every message to the callback", async () => {
    for (let i = 0; i < 12; i++) {
      const res = await client.pubsub.publish("pubsub", "bulk-topic", { n: i });
      assert.deepEqual(res, {});
    }
    await eventually(() => got("bulk-topic").length >= 12, `bulk: ${got("bulk-topic").length} of 12`);
    await sleep(400);
    assert.deepEqual(got("bulk-topic").map((x) => x.data.n).sort((a, b) => a - b), [...Array(12).keys()]);
    assert.ok(/bulk delivery of \d+ messages/.test(daprd.log), "daprd sent bulk deliveries");
  });

  test("publishBulk", async () => {
    const before = got("orders").length;
    const res = await client.pubsub.publishBulk("pubsub", "orders", [{ b: 1 }, "two", { b: 3 }]);
    assert.deepEqual(res.failedMessages, []);
    await eventually(() => got("orders").length >= before + 3, "bulk published messages not received");
  });

  test("publish to an unknown pubsub hands back {error} (404 ERR_PUBSUB_NOT_FOUND)", async () => {
    const res = await client.pubsub.publish("nosuchpubsub", "orders", { x: 1 });
    assert.ok(res.error, JSON.stringify(res));
    const outer = JSON.parse(res.error.message);
    assert.equal(outer.status, 404);
    assert.equal(JSON.parse(outer.error_msg).errorCode, "ERR_PUBSUB_NOT_FOUND");
  });
});
