// Compatibility test: the Dapr JavaScript SDK (@dapr/dapr, HTTP mode) reads
// secrets through our daprd.  The test starts daprd itself on 127.0.0.1 and
// a free port with a temporary resources folder holding a
// secretstores.local.file store (plain and multiValued) and a Configuration
// with a secret scope, and checks what the SDK hands back to an application.
//
// Environment (t/sdk-js/run.sh sets both under make check):
//   DAPRD                   the daprd binary
//   DAPR_TEST_PLUGINS_PATH  colon-separated folders holding the plugin .so
//                           files (the secretstore-localfile one among them)

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";

const APP_ID = "jssecrets";
const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 10000;

for (const v of ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "APP_API_TOKEN"])
  delete process.env[v];

const SECRETS = { "db-password": "pa55word", redis: { host: "localhost", password: "r3dis" }, hidden: "h" };

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

function store(name, file, multiValued) {
  return [
    "apiVersion: dapr.io/v1alpha1",
    "kind: Component",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    "  type: secretstores.local.file",
    "  version: v1",
    "  metadata:",
    "  - name: secretsFile",
    `    value: ${JSON.stringify(file)}`,
    "  - name: multiValued",
    `    value: "${multiValued}"`,
    "",
  ].join("\n");
}

class Daprd {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dapr-jssecrets-"));
    this.resources = path.join(this.tmp, "resources");
    fs.mkdirSync(this.resources);
    const file = path.join(this.tmp, "secrets.json");
    fs.writeFileSync(file, JSON.stringify(SECRETS));
    fs.writeFileSync(path.join(this.resources, "stores.yaml"),
      store("localsecrets", file, false) + "---\n" + store("multisecrets", file, true));
    this.config = path.join(this.tmp, "config.yaml");
    fs.writeFileSync(this.config, [
      "apiVersion: dapr.io/v1alpha1",
      "kind: Configuration",
      "metadata:",
      "  name: jssecrets",
      "spec:",
      "  secrets:",
      "    scopes:",
      "      - {storeName: localsecrets, deniedSecrets: [hidden]}",
      "",
    ].join("\n"));
    this.log = "";
    this.proc = null;
    this.exited = null;
  }

  start(port) {
    const daprd = process.env.DAPRD;
    assert.ok(daprd, "DAPRD must name the daprd binary");
    const args = ["--app-id", APP_ID, "--dapr-http-port", String(port), "--dapr-listen-addresses", "127.0.0.1",
      "--resources-path", this.resources, "--config", this.config];
    for (const dir of (process.env.DAPR_TEST_PLUGINS_PATH || "").split(":"))
      if (dir) args.push("--plugins-dir", dir);
    const env = { ...process.env, HOME: this.tmp };
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

// The SDK turns a non-2xx answer into Error(JSON.stringify({error, error_msg, status})).
async function rejectsWith(promise, status, errorCode) {
  let caught = null;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, `expected the SDK to throw (HTTP ${status} ${errorCode})`);
  const outer = JSON.parse(caught.message);
  assert.equal(outer.status, status, `status of ${caught.message}`);
  assert.equal(JSON.parse(outer.error_msg).errorCode, errorCode, `errorCode of ${caught.message}`);
}

const daprd = new Daprd();
let client = null;

process.on("exit", () => {
  if (daprd.proc && daprd.proc.exitCode === null) daprd.proc.kill("SIGKILL");
});

before(async () => {
  let lastFailure = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    daprd.start(await freePort());
    const c = new DaprClient({
      daprHost: "127.0.0.1",
      daprPort: String(daprd.port),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      logger: { level: LogLevel.Error },
    });
    let timer;
    const limit = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("daprd readiness: timed out")), START_TIMEOUT_MS);
    });
    try {
      const outcome = await Promise.race([
        c.start().then(() => "ready"),
        daprd.exited.then((how) => `daprd ${how}`),
        limit,
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
      clearTimeout(timer);
    }
    if (!/address already in use|EADDRINUSE|bind/i.test(daprd.tail()))
      throw new Error(`${lastFailure} before it was ready\n---- daprd log ----\n${daprd.tail()}`);
  }
  throw new Error(`${lastFailure} three times\n---- daprd log ----\n${daprd.tail()}`);
});

after(async () => {
  if (client) await client.stop().catch(() => {});
  await daprd.stop();
  daprd.cleanup();
});

describe("secrets", () => {
  test("secret.get() returns the secret's key/value map", async () => {
    assert.deepEqual(await client.secret.get("localsecrets", "db-password"), { "db-password": "pa55word" });
    assert.deepEqual(await client.secret.get("localsecrets", "redis:host"), { "redis:host": "localhost" });
  });

  test("secret.get() of a multi-valued secret", async () => {
    assert.deepEqual(await client.secret.get("multisecrets", "redis"), { host: "localhost", password: "r3dis" });
  });

  test("secret.get() passes metadata through the query string", async () => {
    assert.deepEqual(await client.secret.get("localsecrets", "db-password", "metadata.namespace=default"),
      { "db-password": "pa55word" });
  });

  test("secret.getBulk() returns every secret the scopes allow", async () => {
    const all = await client.secret.getBulk("localsecrets");
    assert.deepEqual(all, {
      "db-password": { "db-password": "pa55word" },
      "redis:host": { "redis:host": "localhost" },
      "redis:password": { "redis:password": "r3dis" },
    });
    const multi = await client.secret.getBulk("multisecrets");
    assert.deepEqual(multi.redis, { host: "localhost", password: "r3dis" });
    assert.deepEqual(multi.hidden, { hidden: "h" });
  });

  test("errors: missing secret, denied secret, unknown store", async () => {
    await rejectsWith(client.secret.get("localsecrets", "nope"), 500, "ERR_SECRET_GET");
    await rejectsWith(client.secret.get("localsecrets", "hidden"), 403, "ERR_PERMISSION_DENIED");
    await rejectsWith(client.secret.get("nostore", "x"), 401, "ERR_SECRET_STORE_NOT_FOUND");
  });
});
