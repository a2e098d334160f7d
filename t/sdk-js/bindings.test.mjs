// Compatibility test: the Dapr JavaScript SDK (@dapr/dapr, HTTP mode)
// invokes an output binding through our daprd: client.binding.send() with
// bindings.localstorage (create, get, list, delete) and the error the SDK
// sees for an unknown binding.  The test starts daprd itself on 127.0.0.1
// and a free port with a temporary resources folder.
//
// Environment (t/sdk-js/run.sh sets both under make check):
//   DAPRD                   the daprd binary
//   DAPR_TEST_PLUGINS_PATH  colon-separated folders holding the plugin .so
//                           files (the bindings-localstorage one among them)

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";

const APP_ID = "jsbindings";
const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 10000;

for (const v of ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "APP_API_TOKEN"])
  delete process.env[v];

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

function localstorage(name, root) {
  return [
    "apiVersion: dapr.io/v1alpha1",
    "kind: Component",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    "  type: bindings.localstorage",
    "  version: v1",
    "  metadata:",
    "  - name: rootPath",
    `    value: ${JSON.stringify(root)}`,
    "",
  ].join("\n");
}

class Daprd {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dapr-jsbindings-"));
    this.resources = path.join(this.tmp, "resources");
    this.root = path.join(this.tmp, "files");
    fs.mkdirSync(this.resources);
    fs.writeFileSync(path.join(this.resources, "bindings.yaml"), localstorage("files", this.root));
    this.log = "";
    this.proc = null;
    this.exited = null;
  }

  start(port) {
    const daprd = process.env.DAPRD;
    assert.ok(daprd, "DAPRD must name the daprd binary");
    const args = ["--app-id", APP_ID, "--dapr-http-port", String(port), "--dapr-listen-addresses", "127.0.0.1",
      "--resources-path", this.resources];
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

describe("bindings", () => {
  test("binding.send() create then get a file", async () => {
    const created = await client.binding.send("files", "create", "hello from the JS SDK", { fileName: "js/hello.txt" });
    assert.deepEqual(created, { fileName: "js/hello.txt" });
    assert.equal(fs.readFileSync(path.join(daprd.root, "js", "hello.txt"), "utf8"), "hello from the JS SDK");
    assert.equal(await client.binding.send("files", "get", undefined, { fileName: "js/hello.txt" }),
      "hello from the JS SDK");
  });

  test("binding.send() with JSON data and a list", async () => {
    await client.binding.send("files", "create", { order: 7, items: ["a", "b"] }, { fileName: "js/order.json" });
    assert.deepEqual(await client.binding.send("files", "get", undefined, { fileName: "js/order.json" }),
      { items: ["a", "b"], order: 7 });
    const list = await client.binding.send("files", "list", undefined, { fileName: "js" });
    assert.deepEqual(list, [path.join(daprd.root, "js", "hello.txt"), path.join(daprd.root, "js", "order.json")]);
  });

  test("binding.send() delete answers no content", async () => {
    assert.equal(await client.binding.send("files", "delete", undefined, { fileName: "js/order.json" }), "");
    assert.ok(!fs.existsSync(path.join(daprd.root, "js", "order.json")));
  });

  test("errors: unknown binding, unsupported operation, path outside rootPath", async () => {
    await rejectsWith(client.binding.send("nosuch", "create", "x"), 500, "ERR_INVOKE_OUTPUT_BINDING");
    await rejectsWith(client.binding.send("files", "append", "x"), 500, "ERR_INVOKE_OUTPUT_BINDING");
    await rejectsWith(client.binding.send("files", "get", undefined, { fileName: "../../etc/passwd" }), 500,
      "ERR_INVOKE_OUTPUT_BINDING");
  });
});
