/**
 * Authentication and authorisation: bearer tokens with roles from a tokens
 * file, per-worker tokens issued by RegisterWorker, reloading the file
 * (in-process and on SIGHUP), open or authenticated health and reflection,
 * the project's client and worker runtime end to end, and log redaction.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { createLogger } from "../../src/log.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { WorkerState } from "@sentinel/worker-registry-client/contract";
import { startServerProcess } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import {
  codeName,
  eventually,
  healthCheck,
  heartbeatStreamOutcome,
  hold,
  LogCapture,
  reflectionList,
  REGISTRATION,
  RepeatedAuthorizationProxy,
  RPCS,
  SecClient,
  statusWithin,
  watchOutcome,
  type HeldStream,
  type Outcome,
} from "./support.js";

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const newToken = (label: string) => `${label}-${randomBytes(24).toString("base64url")}`;

/** Every secret a test hands out or sends, so the log checks can look for all of them. */
const SECRETS = new Set<string>();
const secret = (token: string) => {
  SECRETS.add(token);
  return token;
};

const T = {
  admin: secret(newToken("admin")),
  /** Written to the file as uppercase `sha256:HEX`. */
  admin2: secret(newToken("admin2")),
  /** Written to the file as `sha256:hex`. */
  orchestrator: secret(newToken("orchestrator")),
  worker: secret(newToken("worker")),
  worker2: secret(newToken("worker2")),
};

/** A tokens file with comments, blank lines, a trailing comment and hashed entries. */
function tokensFileText(tokens: typeof T): string {
  return [
    "# worker registry tokens: ROLE TOKEN, one per line",
    "",
    `admin ${tokens.admin}`,
    `   # an indented comment`,
    `orchestrator sha256:${sha256(tokens.orchestrator)}`,
    "",
    `worker ${tokens.worker}   # the fleet's bootstrap token`,
    `worker\t${tokens.worker2}`,
    `admin sha256:${sha256(tokens.admin2).toUpperCase()}`,
    "",
  ].join("\n");
}

const WORKER_TOKEN = /^(worker-\d{1,16}-[a-z0-9]{1,32})\.([A-Za-z0-9_-]{43})$/;
const ALL = RPCS.map((r) => r.name);

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

interface Served {
  server: RegistryServer;
  address: string;
  client: SecClient;
  logs: LogCapture;
  tokensFile: string;
  dbPath: string;
  dir: string;
}

async function serve(options: { authenticateHealth?: boolean; authenticateReflection?: boolean; dir?: string; limits?: object } = {}): Promise<Served> {
  const dir = options.dir ?? dirs.make("registry-auth-");
  const tokensFile = join(dir, "tokens.txt");
  if (options.dir === undefined) writeFileSync(tokensFile, tokensFileText(T));
  const logs = new LogCapture();
  const dbPath = join(dir, "registry.db");
  const server = await startRegistryServer({
    host: "127.0.0.1",
    port: 0,
    dbPath,
    logger: createLogger("trace", logs),
    security: {
      tokensFile,
      ...(options.authenticateHealth ? { authenticateHealth: true } : {}),
      ...(options.authenticateReflection ? { authenticateReflection: true } : {}),
    },
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const address = `127.0.0.1:${server.port}`;
  return { server, address, client: new SecClient(address), logs, tokensFile, dbPath, dir };
}

/** The logs of every server these tests ran, checked for secrets at the end. */
const allLogs: LogCapture[] = [];

describe("role tokens", () => {
  let s: Served;
  let client: SecClient;

  beforeAll(async () => {
    s = await serve();
    allLogs.push(s.logs);
    client = s.client;
  });
  afterAll(async () => {
    client.close();
    await s.server.close();
  });

  interface Target {
    readonly id: string;
    readonly token: string;
  }
  const newWorker = async (token: string): Promise<Target> => {
    const r = await client.call("registerWorker", { ...REGISTRATION, capabilities: ["matrix"] }, token);
    return { id: r.worker.id, token: secret(r.workerToken) };
  };

  /** Calls `rpc` with `token` on `target` (for the calls that name a worker); the status name. */
  async function probe(rpc: string, token: string | undefined, target: Target, via: SecClient = client): Promise<string> {
    const unary = async (method: string, request: object) => codeName((await via.outcome(method, request, token)).code);
    switch (rpc) {
      case "RegisterWorker":
        return unary("registerWorker", { ...REGISTRATION, capabilities: ["matrix"] });
      case "UnregisterWorker":
        return unary("unregisterWorker", { workerId: target.id });
      case "Heartbeat":
        return unary("heartbeat", { workerId: target.id });
      case "HeartbeatStream":
        return codeName((await heartbeatStreamOutcome(via, target.id, token)).code);
      case "UpdateTaskCount":
        return unary("updateTaskCount", { workerId: target.id, delta: 1 });
      case "RecordTaskCompletion":
        return unary("recordTaskCompletion", { workerId: target.id, success: true, durationMs: 12 });
      case "GetWorker":
        return unary("getWorker", { workerId: target.id });
      case "DiscoverWorkers":
        return unary("discoverWorkers", {});
      case "GetWorkersForLoadBalancing":
        return unary("getWorkersForLoadBalancing", {});
      case "GetRegistryStats":
        return unary("getRegistryStats", {});
      case "AcquireWorker":
        return unary("acquireWorker", { filter: { capabilities: ["matrix"] } });
      case "ReleaseWorker": {
        const acquired = await client.call("acquireWorker", { filter: { capabilities: ["matrix"] } }, T.admin);
        return unary("releaseWorker", { reservationId: acquired.reservationId, success: true, durationMs: 5 });
      }
      case "WatchWorkers":
        return codeName((await watchOutcome(via, token, () => client.outcome("registerWorker", REGISTRATION, T.admin))).code);
      case "ResumeEviction":
        return unary("resumeEviction", {});
      case "CordonWorker":
        return unary("cordonWorker", { workerId: target.id });
      case "UncordonWorker":
        return unary("uncordonWorker", { workerId: target.id });
      case "DrainWorker":
        return unary("drainWorker", { workerId: target.id });
      default:
        throw new Error(`no probe for ${rpc}`);
    }
  }

  /** Runs every RPC once, each on a fresh target, and returns the status name per RPC. */
  async function row(makeTarget: () => Promise<Target>, tokenFor: (target: Target) => Promise<string | undefined> | string | undefined, via: SecClient = client) {
    const result: Record<string, string> = {};
    for (const rpc of ALL) {
      const target = await makeTarget();
      result[rpc] = await probe(rpc, await tokenFor(target), target, via);
    }
    return result;
  }

  /** The expected row: OK for the allowed RPCs, `otherwise` for the rest. */
  const expected = (allowed: readonly string[], otherwise = "PERMISSION_DENIED") => {
    for (const name of allowed) if (!ALL.includes(name)) throw new Error(`unknown RPC ${name}`);
    return Object.fromEntries(ALL.map((name) => [name, allowed.includes(name) ? "OK" : otherwise]));
  };

  const ON_ONE_WORKER = ["UnregisterWorker", "Heartbeat", "HeartbeatStream", "UpdateTaskCount", "RecordTaskCompletion", "GetWorker", "DrainWorker"];
  const ORCHESTRATOR = [
    ...["UpdateTaskCount", "RecordTaskCompletion", "GetWorker", "DiscoverWorkers", "GetWorkersForLoadBalancing", "GetRegistryStats"],
    ...["AcquireWorker", "ReleaseWorker", "WatchWorkers", "CordonWorker", "UncordonWorker", "DrainWorker"],
  ];

  it("covers all 17 RPCs of the contract", () => {
    expect(ALL).toHaveLength(17);
    expect(ALL).toEqual(expect.arrayContaining(["HeartbeatStream", "WatchWorkers", "AcquireWorker", "ReleaseWorker"]));
  });

  it("a call without a token gets UNAUTHENTICATED, on every RPC", async () => {
    expect(await row(() => newWorker(T.admin), () => undefined)).toEqual(expected([], "UNAUTHENTICATED"));
  });

  it("a wrong token gets UNAUTHENTICATED, on every RPC", async () => {
    const wrong = secret(newToken("wrong"));
    expect(await row(() => newWorker(T.admin), () => wrong)).toEqual(expected([], "UNAUTHENTICATED"));
  });

  it("a worker token with a wrong secret gets UNAUTHENTICATED, on every RPC", async () => {
    const forged = (target: Target) => secret(`${target.id}.${randomBytes(32).toString("base64url")}`);
    expect(await row(() => newWorker(T.admin), forged)).toEqual(expected([], "UNAUTHENTICATED"));
  });

  it("malformed authorization metadata gets UNAUTHENTICATED", async () => {
    const raw = async (values: string[]) => {
      const metadata = new (await import("@grpc/grpc-js")).Metadata();
      for (const value of values) metadata.add("authorization", value);
      return new Promise<number>((resolve) => {
        client.raw.makeUnaryRequest(
          "/sentinel.registry.v1.WorkerRegistryService/GetRegistryStats",
          () => Buffer.alloc(0),
          (b: Buffer) => b,
          {},
          metadata,
          (error) => resolve(error ? error.code : 0),
        );
      });
    };
    const outcomes = {
      basicScheme: codeName(await raw([`Basic ${T.admin}`])),
      bareToken: codeName(await raw([T.admin])),
      emptyBearer: codeName(await raw(["Bearer "])),
      doubleSpace: codeName(await raw([`Bearer  ${T.admin}`])),
      trailingGarbage: codeName(await raw([`Bearer ${T.admin} x`])),
      theHashItself: codeName(await raw([`Bearer sha256:${sha256(T.orchestrator)}`])),
      control: codeName(await raw([`Bearer ${T.admin}`])),
    };
    expect(outcomes).toEqual({
      basicScheme: "UNAUTHENTICATED",
      bareToken: "UNAUTHENTICATED",
      emptyBearer: "UNAUTHENTICATED",
      doubleSpace: "UNAUTHENTICATED",
      trailingGarbage: "UNAUTHENTICATED",
      theHashItself: "UNAUTHENTICATED",
      control: "OK",
    });
  });

  // Regression: Node's HTTP/2 layer kept the first of two authorization values, so the first won although the
  // docs promise a rejection.
  it("a call with two authorization values gets UNAUTHENTICATED, on every RPC, even when the first is valid", async () => {
    const port = Number(s.address.split(":").pop());
    const control = await RepeatedAuthorizationProxy.start(port, undefined);
    const second = await RepeatedAuthorizationProxy.start(port, `Bearer ${secret(newToken("second"))}`);
    const twice = await RepeatedAuthorizationProxy.start(port, `Bearer ${T.admin}`);
    const [viaControl, viaSecond, viaTwice] = [control, second, twice].map((p) => new SecClient(p.address));
    try {
      // The proxy alone changes nothing: one admin token, every RPC allowed.
      expect(await row(() => newWorker(T.worker), () => T.admin, viaControl!)).toEqual(expected(ALL));
      expect(await row(() => newWorker(T.worker), () => T.admin, viaSecond!)).toEqual(expected([], "UNAUTHENTICATED"));
      const refused = await viaTwice!.outcome("getRegistryStats", {}, T.admin);
      expect(`${codeName(refused.code)}: ${refused.details}`).toBe("UNAUTHENTICATED: more than one authorization value");
    } finally {
      for (const c of [viaControl, viaSecond, viaTwice]) c!.close();
      for (const p of [control, second, twice]) await p.close();
    }
  });

  it("a sha256: entry accepts its plain token (lower- and uppercase hex)", async () => {
    expect(codeName((await client.outcome("getRegistryStats", {}, T.orchestrator)).code)).toBe("OK");
    expect(codeName((await client.outcome("getRegistryStats", {}, T.admin2)).code)).toBe("OK");
  });

  it("admin: every RPC allowed", async () => {
    // The target is registered by a worker-role token: admin acts on any worker.
    expect(await row(() => newWorker(T.worker), () => T.admin)).toEqual(expected(ALL));
  });

  it("admin given as an uppercase sha256: entry: every RPC allowed", async () => {
    expect(await row(() => newWorker(T.worker2), () => T.admin2)).toEqual(expected(ALL));
  });

  it("orchestrator: reads, ranks, acquires and releases, updates counts, records completions, cordons and drains; nothing else", async () => {
    expect(await row(() => newWorker(T.admin), () => T.orchestrator)).toEqual(expected(ORCHESTRATOR));
  });

  it("worker role: registers, and acts on the workers it registered", async () => {
    expect(await row(() => newWorker(T.worker), () => T.worker)).toEqual(expected(["RegisterWorker", ...ON_ONE_WORKER]));
  });

  it("worker role: may not act on a worker registered by admin", async () => {
    expect(await row(() => newWorker(T.admin), () => T.worker)).toEqual(expected(["RegisterWorker"]));
  });

  it("worker role: may not act on a worker registered by another worker-role token", async () => {
    expect(await row(() => newWorker(T.worker2), () => T.worker)).toEqual(expected(["RegisterWorker"]));
  });

  it("worker token: acts on its own worker only (Heartbeat, HeartbeatStream, UnregisterWorker, UpdateTaskCount, RecordTaskCompletion, GetWorker, DrainWorker)", async () => {
    expect(await row(() => newWorker(T.worker), (target) => target.token)).toEqual(expected(ON_ONE_WORKER));
  });

  it("worker token: PERMISSION_DENIED on another worker, on fleet reads, on acquire and release", async () => {
    const other = async () => (await newWorker(T.worker)).token;
    expect(await row(() => newWorker(T.worker), other)).toEqual(expected([]));
  });

  it("a worker token cannot touch another worker even when the same worker-role token registered both", async () => {
    const a = await newWorker(T.worker);
    const b = await newWorker(T.worker);
    const before = await client.call("getWorker", { workerId: b.id }, T.admin);
    const attempts = {
      heartbeat: codeName((await client.outcome("heartbeat", { workerId: b.id }, a.token)).code),
      stream: codeName((await heartbeatStreamOutcome(client, b.id, a.token)).code),
      count: codeName((await client.outcome("updateTaskCount", { workerId: b.id, delta: 5 }, a.token)).code),
      completion: codeName((await client.outcome("recordTaskCompletion", { workerId: b.id, success: false, durationMs: 1 }, a.token)).code),
      unregister: codeName((await client.outcome("unregisterWorker", { workerId: b.id }, a.token)).code),
    };
    expect(attempts).toEqual({ heartbeat: "PERMISSION_DENIED", stream: "PERMISSION_DENIED", count: "PERMISSION_DENIED", completion: "PERMISSION_DENIED", unregister: "PERMISSION_DENIED" });
    const after = await client.call("getWorker", { workerId: b.id }, T.admin);
    expect(after.currentTasks).toBe(before.currentTasks);
    expect(after.metrics).toEqual(before.metrics);
  });

  it("a worker token cannot drain (nor cordon) another worker, which stays active and in rotation", async () => {
    const a = await newWorker(T.worker);
    const b = await newWorker(T.worker);
    const drain = await client.outcome("drainWorker", { workerId: b.id, grace: { seconds: 60n } }, a.token);
    expect(`${codeName(drain.code)}: ${drain.details}`).toBe(`PERMISSION_DENIED: the token of worker ${a.id} may act only on that worker`);
    const cordon = await client.outcome("cordonWorker", { workerId: b.id }, a.token);
    expect(`${codeName(cordon.code)}: ${cordon.details}`).toBe("PERMISSION_DENIED: a worker token may not cordon; use a role token");
    const after = await client.call("getWorker", { workerId: b.id }, T.admin);
    expect({ state: after.worker.state, drainDeadline: after.worker.drainDeadline }).toEqual({ state: WorkerState.ACTIVE, drainDeadline: undefined });
    // Its own: allowed.
    const own = await client.call("drainWorker", { workerId: a.id, grace: { seconds: 60n } }, a.token);
    expect(own.worker.state).toBe(WorkerState.DRAINING);
  });

  it("a heartbeat stream opened with a worker token cannot switch to another worker mid-stream", async () => {
    const a = await newWorker(T.worker);
    const b = await newWorker(T.worker);
    const stream = client.heartbeatStream(a.token);
    const replies: any[] = [];
    stream.on("data", (reply) => replies.push(reply));
    stream.on("error", () => {});
    const ended = new Promise<any>((resolve) => stream.on("status", resolve));
    stream.write({ workerId: a.id, sequence: 1 });
    await eventually(() => replies.length === 1, 5000, "first reply");
    stream.write({ workerId: b.id, sequence: 2 });
    const final = await ended;
    expect(codeName(final.code)).not.toBe("OK");
    expect(replies.map((r) => r.workerId)).toEqual([a.id]);
  });

  it("admin may unregister any worker, whoever registered it", async () => {
    for (const registrar of [T.worker, T.worker2, T.admin2]) {
      const target = await newWorker(registrar);
      expect(codeName((await client.outcome("unregisterWorker", { workerId: target.id }, T.admin)).code)).toBe("OK");
      expect(codeName((await client.outcome("getWorker", { workerId: target.id }, T.admin)).code)).toBe("NOT_FOUND");
    }
  });

  it("RegisterWorker returns a worker token of 256 random bits: <worker id>.<43 base64url characters>, unique", async () => {
    const secrets: Buffer[] = [];
    const tokens = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const r = await client.call("registerWorker", REGISTRATION, i % 2 === 0 ? T.worker : T.admin);
      const token = secret(r.workerToken as string);
      const match = WORKER_TOKEN.exec(token);
      expect(match, `token ${JSON.stringify(token)}`).not.toBeNull();
      expect(match![1]).toBe(r.worker.id);
      const bytes = Buffer.from(match![2]!, "base64url");
      expect(bytes).toHaveLength(32);
      expect(bytes.toString("base64url")).toBe(match![2]);
      secrets.push(bytes);
      tokens.add(token);
    }
    expect(tokens.size).toBe(200);
    expect(new Set(secrets.map((b) => b.toString("hex"))).size).toBe(200);
    // 200 x 256 bits: each bit position is set in about half the secrets, and every byte value shows up.
    const all = Buffer.concat(secrets);
    let ones = 0;
    for (const byte of all) for (let bit = 0; bit < 8; bit++) ones += (byte >> bit) & 1;
    expect(ones / (all.length * 8)).toBeGreaterThan(0.48);
    expect(ones / (all.length * 8)).toBeLessThan(0.52);
    for (let position = 0; position < 32; position++) {
      const column = new Set(secrets.map((b) => b[position]));
      expect(column.size, `byte ${position} of the secret takes ${column.size} values in 200 tokens`).toBeGreaterThan(100);
    }
    expect(new Set(all).size).toBe(256);
  });

  it("an orchestrator acquires and releases a worker registered by a worker token's runtime, and the worker sees its count", async () => {
    const w = await newWorker(T.worker);
    const acquired = await client.call("acquireWorker", { filter: { capabilities: ["matrix"] } }, T.orchestrator);
    expect(acquired.reservationId).toMatch(/^rsv-/);
    const released = await client.call("releaseWorker", { reservationId: acquired.reservationId, success: true, durationMs: 3 }, T.orchestrator);
    expect(released.worker).toBeDefined();
    expect((await client.call("getWorker", { workerId: w.id }, w.token)).worker.id).toBe(w.id);
  });

  // Regression: a well-formed worker token naming no worker used to pass authentication as that worker.
  it("a made-up worker token naming no worker is a wrong token: UNAUTHENTICATED on every RPC", async () => {
    const madeUp = secret(`worker-1700000000000-nosuchworker.${"A".repeat(43)}`);
    expect(await row(() => newWorker(T.admin), () => madeUp)).toEqual(expected([], "UNAUTHENTICATED"));
  });

  it("health and reflection are open by default (no token needed)", async () => {
    expect(codeName((await healthCheck(s.address)).code)).toBe("OK");
    const v1 = await reflectionList(s.address, "v1");
    expect(codeName(v1.code)).toBe("OK");
    expect(v1.response).toContain("sentinel.registry.v1.WorkerRegistryService");
    expect(codeName((await reflectionList(s.address, "v1alpha")).code)).toBe("OK");
  });
});

describe("a made-up worker token and stream slots", () => {
  // Regression: made-up worker tokens used to open heartbeat streams that held every slot until their first message.
  it("cannot hold heartbeat stream slots without a valid credential", async () => {
    const s = await serve({ limits: { maxStreams: 2 } });
    allLogs.push(s.logs);
    const intruders: SecClient[] = [];
    try {
      const worker = await s.client.call("registerWorker", REGISTRATION, T.worker);
      secret(worker.workerToken);
      const held = [];
      for (let i = 0; i < 2; i++) {
        const intruder = new SecClient(s.address);
        intruders.push(intruder);
        held.push(hold(intruder.heartbeatStream(`worker-1700000000000-fake${i}.${"B".repeat(43)}`)));
      }
      const refused = await Promise.all(held.map((h) => statusWithin(h, 500)));
      const legit = await heartbeatStreamOutcome(s.client, worker.worker.id, worker.workerToken);
      expect({ intruders: refused.map((r) => codeName(r?.code)), worker: codeName(legit.code) }).toEqual({
        intruders: ["UNAUTHENTICATED", "UNAUTHENTICATED"],
        worker: "OK",
      });
    } finally {
      for (const intruder of intruders) intruder.close();
      s.client.close();
      await s.server.close();
    }
  });

  it("a stream without a token, or with a wrong one, is refused at once and takes no slot", async () => {
    const s = await serve({ limits: { maxStreams: 1 } });
    allLogs.push(s.logs);
    try {
      const worker = await s.client.call("registerWorker", REGISTRATION, T.worker);
      secret(worker.workerToken);
      const anonymous = hold(s.client.heartbeatStream());
      const wrong = hold(s.client.heartbeatStream(secret(newToken("nope"))));
      expect(codeName((await statusWithin(anonymous, 2000))?.code)).toBe("UNAUTHENTICATED");
      expect(codeName((await statusWithin(wrong, 2000))?.code)).toBe("UNAUTHENTICATED");
      expect(codeName((await heartbeatStreamOutcome(s.client, worker.worker.id, worker.workerToken)).code)).toBe("OK");
    } finally {
      s.client.close();
      await s.server.close();
    }
  });
});

describe("health and reflection with authentication", () => {
  it("authenticateHealth: health needs a valid token; reflection stays open", async () => {
    const s = await serve({ authenticateHealth: true });
    allLogs.push(s.logs);
    try {
      expect(codeName((await healthCheck(s.address)).code)).toBe("UNAUTHENTICATED");
      expect(codeName((await healthCheck(s.address, secret(newToken("bad")))).code)).toBe("UNAUTHENTICATED");
      const ok = await healthCheck(s.address, T.worker);
      expect(codeName(ok.code)).toBe("OK");
      expect(ok.response.status).toBe(1);
      expect(codeName((await reflectionList(s.address, "v1")).code)).toBe("OK");
    } finally {
      s.client.close();
      await s.server.close();
    }
  });

  it("authenticateReflection: reflection (v1 and v1alpha) needs a valid token; health stays open", async () => {
    const s = await serve({ authenticateReflection: true });
    allLogs.push(s.logs);
    try {
      expect(codeName((await reflectionList(s.address, "v1")).code)).toBe("UNAUTHENTICATED");
      expect(codeName((await reflectionList(s.address, "v1alpha")).code)).toBe("UNAUTHENTICATED");
      expect(codeName((await reflectionList(s.address, "v1", secret(newToken("bad")))).code)).toBe("UNAUTHENTICATED");
      const ok = await reflectionList(s.address, "v1", T.orchestrator);
      expect(codeName(ok.code)).toBe("OK");
      expect(ok.response).toContain("sentinel.registry.v1.WorkerRegistryService");
      expect(codeName((await reflectionList(s.address, "v1alpha", T.admin)).code)).toBe("OK");
      expect(codeName((await healthCheck(s.address)).code)).toBe("OK");
    } finally {
      s.client.close();
      await s.server.close();
    }
  });
});

describe("two authorization values and authenticated introspection", () => {
  it("authenticated health and reflection refuse a call with two authorization values, even when the first is valid", async () => {
    const s = await serve({ authenticateHealth: true, authenticateReflection: true });
    allLogs.push(s.logs);
    const port = s.server.port;
    const control = await RepeatedAuthorizationProxy.start(port, undefined);
    const second = await RepeatedAuthorizationProxy.start(port, `Bearer ${secret(newToken("second"))}`);
    try {
      const outcomes = async (address: string) => ({
        health: codeName((await healthCheck(address, T.admin)).code),
        reflection: codeName((await reflectionList(address, "v1", T.admin)).code),
      });
      expect(await outcomes(control.address)).toEqual({ health: "OK", reflection: "OK" });
      expect(await outcomes(second.address)).toEqual({ health: "UNAUTHENTICATED", reflection: "UNAUTHENTICATED" });
    } finally {
      await control.close();
      await second.close();
      s.client.close();
      await s.server.close();
    }
  });
});

describe("a made-up worker token and authenticated introspection", () => {
  // Regression: the introspection check let a made-up worker token through.
  it("authenticateHealth and authenticateReflection refuse a made-up worker token", async () => {
    const s = await serve({ authenticateHealth: true, authenticateReflection: true });
    allLogs.push(s.logs);
    try {
      const madeUp = secret(`worker-1700000000000-nosuchworker.${"C".repeat(43)}`);
      expect({
        health: codeName((await healthCheck(s.address, madeUp)).code),
        reflection: codeName((await reflectionList(s.address, "v1", madeUp)).code),
      }).toEqual({ health: "UNAUTHENTICATED", reflection: "UNAUTHENTICATED" });
    } finally {
      s.client.close();
      await s.server.close();
    }
  });
});

describe("worker tokens across a restart", () => {
  it("survive a restart on the same database, which stores only their hash", async () => {
    const dir = dirs.make("registry-restart-");
    writeFileSync(join(dir, "tokens.txt"), tokensFileText(T));
    let s = await serve({ dir });
    allLogs.push(s.logs);
    const registered = await s.client.call("registerWorker", { nodeId: "survivor", capabilities: ["restart"], maxConcurrentTasks: 3 }, T.worker);
    const token = secret(registered.workerToken as string);
    const workerId = registered.worker.id as string;
    const secretPart = WORKER_TOKEN.exec(token)![2]!;
    expect(codeName((await s.client.outcome("heartbeat", { workerId }, token)).code)).toBe("OK");
    s.client.close();
    await s.server.close();

    s = await serve({ dir });
    allLogs.push(s.logs);
    try {
      expect(codeName((await s.client.outcome("heartbeat", { workerId }, token)).code)).toBe("OK");
      expect(codeName((await heartbeatStreamOutcome(s.client, workerId, token)).code)).toBe("OK");
      expect(codeName((await s.client.outcome("getWorker", { workerId }, token)).code)).toBe("OK");
      const wrong = secret(`${workerId}.${randomBytes(32).toString("base64url")}`);
      expect(codeName((await s.client.outcome("heartbeat", { workerId }, wrong)).code)).toBe("UNAUTHENTICATED");
      // The worker-role token that registered it still may act on it after the restart.
      expect(codeName((await s.client.outcome("heartbeat", { workerId }, T.worker)).code)).toBe("OK");
      expect(codeName((await s.client.outcome("heartbeat", { workerId }, T.worker2)).code)).toBe("PERMISSION_DENIED");
    } finally {
      s.client.close();
      await s.server.close();
    }

    // Only hashes on disk: neither the worker token, its secret, nor any role token appears in any file of the database.
    const files = readdirSync(dir).filter((f) => f.startsWith("registry.db"));
    expect(files).toContain("registry.db");
    for (const file of files) {
      const bytes = readFileSync(join(dir, file));
      for (const needle of [token, secretPart, ...Object.values(T)]) {
        expect(bytes.includes(Buffer.from(needle)), `${file} contains a secret`).toBe(false);
      }
    }
    const db = new Database(join(dir, "registry.db"), { readonly: true });
    try {
      const row = db.prepare("SELECT token_hash AS tokenHash, registered_by AS registeredBy FROM workers WHERE id = ?").get(workerId) as
        | { tokenHash: string; registeredBy: string | null }
        | undefined;
      expect(row).toEqual({ tokenHash: sha256(secretPart), registeredBy: sha256(T.worker) });
    } finally {
      db.close();
    }
  });
});

describe("reloading the tokens file", () => {
  it("reloadTokens() swaps the tokens without a restart; a broken file keeps the old ones", async () => {
    const s = await serve();
    allLogs.push(s.logs);
    try {
      const w = await s.client.call("registerWorker", REGISTRATION, T.worker);
      const workerToken = secret(w.workerToken as string);
      const next = { admin: secret(newToken("admin-next")), admin2: secret(newToken("admin2-next")), orchestrator: secret(newToken("orch-next")), worker: secret(newToken("worker-next")), worker2: secret(newToken("worker2-next")) };
      writeFileSync(s.tokensFile, tokensFileText(next));
      s.server.reloadTokens();
      const code = async (token: string) => codeName((await s.client.outcome("getRegistryStats", {}, token)).code);
      expect({ oldAdmin: await code(T.admin), oldOrchestrator: await code(T.orchestrator), newAdmin: await code(next.admin), newOrchestrator: await code(next.orchestrator) }).toEqual({
        oldAdmin: "UNAUTHENTICATED",
        oldOrchestrator: "UNAUTHENTICATED",
        newAdmin: "OK",
        newOrchestrator: "OK",
      });
      expect(codeName((await s.client.outcome("registerWorker", REGISTRATION, T.worker)).code)).toBe("UNAUTHENTICATED");
      expect(codeName((await s.client.outcome("registerWorker", REGISTRATION, next.worker)).code)).toBe("OK");
      // Worker tokens are not in the file: they keep working across a rotation.
      expect(codeName((await s.client.outcome("heartbeat", { workerId: w.worker.id }, workerToken)).code)).toBe("OK");
      expect(s.logs.lines().some((l) => l.msg === "tokens reloaded")).toBe(true);

      const broken = [
        ["a token too short", "admin short\n"],
        ["an unknown role", `superuser ${newToken("x")}\n`],
        ["a bad hash", "admin sha256:1234\n"],
        ["three fields", `admin ${newToken("x")} extra\n`],
        ["no tokens at all", "# nothing here\n\n"],
      ] as const;
      for (const [what, text] of broken) {
        writeFileSync(s.tokensFile, text);
        expect(() => s.server.reloadTokens(), what).toThrow();
        expect(await code(next.admin), `after ${what}`).toBe("OK");
        expect(await code(T.admin), `after ${what}`).toBe("UNAUTHENTICATED");
      }
      writeFileSync(s.tokensFile, tokensFileText(next));
      const missing = join(s.dir, "tokens.txt");
      const { rmSync } = await import("node:fs");
      rmSync(missing);
      expect(() => s.server.reloadTokens()).toThrow(/cannot read tokens file/);
      expect(await code(next.admin)).toBe("OK");
    } finally {
      s.client.close();
      await s.server.close();
    }
  });

  // Regression: streams opened with a token that a reload removed kept working for ever.
  it("streams opened with a role token that a reload removed end with UNAUTHENTICATED at the reload; the others keep going", async () => {
    const s = await serve();
    allLogs.push(s.logs);
    const opened: HeldStream[] = [];
    try {
      const a = await s.client.call("registerWorker", REGISTRATION, T.worker);
      const b = await s.client.call("registerWorker", REGISTRATION, T.worker2);
      secret(a.workerToken);
      const bToken = secret(b.workerToken as string);
      /** A heartbeat stream bound to its worker by a first heartbeat that was answered. */
      const boundStream = async (workerId: string, token: string) => {
        const call = s.client.heartbeatStream(token);
        const replied = new Promise<void>((resolve) => call.once("data", () => resolve()));
        const held = hold(call);
        opened.push(held);
        call.write({ workerId, sequence: 1 });
        await replied;
        return held;
      };
      const byRoleToken = await boundStream(a.worker.id, T.worker);
      const byWorkerToken = await boundStream(b.worker.id, bToken);
      const orchestratorWatch = hold(s.client.watch({}, T.orchestrator));
      const adminWatch = hold(s.client.watch({}, T.admin));
      opened.push(orchestratorWatch, adminWatch);
      expect(await Promise.all(opened.map((h) => statusWithin(h, 300)))).toEqual([undefined, undefined, undefined, undefined]);

      // The worker-role and orchestrator tokens leave the file; admin and worker2 stay.
      writeFileSync(s.tokensFile, [`admin ${T.admin}`, `worker ${T.worker2}`].join("\n"));
      s.server.reloadTokens();
      const revoked = "UNAUTHENTICATED: the token this stream was opened with was removed by a tokens reload; reconnect with a current token";
      const ended = async (h: HeldStream) => {
        const status = await statusWithin(h, 2000);
        return status === undefined ? "OPEN" : `${codeName(status.code)}: ${status.details}`;
      };
      expect({ byRoleToken: await ended(byRoleToken), orchestratorWatch: await ended(orchestratorWatch) }).toEqual({ byRoleToken: revoked, orchestratorWatch: revoked });
      expect({ byWorkerToken: await ended(byWorkerToken), adminWatch: await ended(adminWatch) }).toEqual({ byWorkerToken: "OPEN", adminWatch: "OPEN" });
      expect(s.logs.lines().find((l) => l.msg === "tokens reloaded")).toMatchObject({ roleTokens: 2, streamsEnded: 2 });
    } finally {
      for (const h of opened) h.call.cancel();
      s.client.close();
      await s.server.close();
    }
  });

  // Regression: a line written TOKEN ROLE used to put the token in the error message.
  it("a tokens file error never echoes a token (a line written TOKEN ROLE)", async () => {
    const s = await serve();
    allLogs.push(s.logs);
    try {
      const swapped = secret(newToken("swapped"));
      writeFileSync(s.tokensFile, `${swapped} admin\n`);
      let message = "";
      try {
        s.server.reloadTokens();
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).not.toBe("");
      expect(message).not.toContain(swapped);
    } finally {
      s.client.close();
      await s.server.close();
    }
  });

  it("SIGHUP makes a CLI server started with --tokens-file reload it; a broken file keeps the old tokens", async () => {
    const dir = dirs.make("registry-sighup-");
    const tokensFile = join(dir, "tokens.txt");
    writeFileSync(tokensFile, tokensFileText(T));
    const proc = await startServerProcess(["--db", join(dir, "registry.db"), "--tokens-file", tokensFile, "--log-level", "info"]);
    let stderr = "";
    proc.child.stderr!.on("data", (chunk) => (stderr += chunk));
    const client = new SecClient(`127.0.0.1:${proc.port}`);
    try {
      const code = async (token?: string) => codeName((await client.outcome("getRegistryStats", {}, token)).code);
      expect(await code()).toBe("UNAUTHENTICATED");
      expect(await code(T.admin)).toBe("OK");
      const w = await client.call("registerWorker", REGISTRATION, T.worker);
      const workerToken = secret(w.workerToken as string);

      const next = { ...T, admin: secret(newToken("admin-hup")), orchestrator: secret(newToken("orch-hup")) };
      writeFileSync(tokensFile, tokensFileText(next));
      const reloadsBefore = proc.logs.filter((l) => l.msg === "tokens reloaded").length;
      proc.child.kill("SIGHUP");
      await eventually(() => proc.logs.filter((l) => l.msg === "tokens reloaded").length > reloadsBefore, 5000, "tokens reloaded log");
      expect({ old: await code(T.admin), new: await code(next.admin), orchestrator: await code(next.orchestrator) }).toEqual({ old: "UNAUTHENTICATED", new: "OK", orchestrator: "OK" });
      expect(codeName((await client.outcome("heartbeat", { workerId: w.worker.id }, workerToken)).code)).toBe("OK");

      writeFileSync(tokensFile, "admin tooshort\n");
      proc.child.kill("SIGHUP");
      await eventually(() => stderr.includes("tokens not reloaded"), 5000, "the reload error on stderr");
      expect(await code(next.admin)).toBe("OK");
      expect(await code(T.admin)).toBe("UNAUTHENTICATED");

      // The server keeps running after both signals.
      expect(proc.child.exitCode).toBeNull();
      const everything = JSON.stringify(proc.logs) + stderr;
      for (const token of SECRETS) expect(everything.includes(token), "a token in the CLI server's output").toBe(false);
    } finally {
      client.close();
      proc.child.kill("SIGTERM");
      const exit = await proc.exited;
      expect(exit.code).toBe(0);
    }
  });

  it("the tokens file can be given in REGISTRY_TOKENS_FILE", async () => {
    const { spawn } = await import("node:child_process");
    const { CLI_PATH } = await import("../support/server-process.js");
    const dir = dirs.make("registry-env-");
    const tokensFile = join(dir, "tokens.txt");
    writeFileSync(tokensFile, tokensFileText(T));
    const child = spawn(process.execPath, [CLI_PATH, "serve", "--host", "127.0.0.1", "--port", "0", "--db", join(dir, "r.db")], {
      env: { ...process.env, REGISTRY_TOKENS_FILE: tokensFile },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let out = "";
      child.stdout!.on("data", (c) => (out += c));
      await eventually(() => out.includes('"registry serving"'), 10_000, "the server to start");
      const port = Number(/"address":"127\.0\.0\.1:(\d+)"/.exec(out)![1]);
      const client = new SecClient(`127.0.0.1:${port}`);
      try {
        expect(codeName((await client.outcome("getRegistryStats")).code)).toBe("UNAUTHENTICATED");
        expect(codeName((await client.outcome("getRegistryStats", {}, T.orchestrator)).code)).toBe("OK");
      } finally {
        client.close();
      }
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });
});

describe("the project's client and worker runtime with tokens", () => {
  let s: Served;

  beforeAll(async () => {
    s = await serve();
    allLogs.push(s.logs);
  });
  afterAll(async () => {
    s.client.close();
    await s.server.close();
  });

  /** Rotates the role tokens so that the old worker-role token stops working: later calls succeed only with worker tokens. */
  const revokeRoleTokens = () => {
    const fresh = { admin: T.admin, admin2: T.admin2, orchestrator: T.orchestrator, worker: secret(newToken("rotated")), worker2: secret(newToken("rotated2")) };
    writeFileSync(s.tokensFile, tokensFileText(fresh));
    s.server.reloadTokens();
  };
  const restoreRoleTokens = () => {
    writeFileSync(s.tokensFile, tokensFileText(T));
    s.server.reloadTokens();
  };

  it("WorkerRegistryClient sends its `token` and, for a worker it registered, that worker's token", async () => {
    const client = new WorkerRegistryClient({ address: s.address, token: T.worker, retry: false });
    try {
      const worker = await client.registerWorker({ nodeId: "client-e2e", capabilities: ["e2e"], maxConcurrentTasks: 2 });
      const token = client.workerToken(worker.id);
      expect(token).toMatch(WORKER_TOKEN);
      secret(token!);
      expect(token!.startsWith(`${worker.id}.`)).toBe(true);
      revokeRoleTokens();
      // The role token no longer works...
      const denied = await client.getRegistryStats().then(
        () => "OK",
        (e: RegistryClientError) => e.codeName,
      );
      expect(denied).toBe("UNAUTHENTICATED");
      // ...but every call naming the worker carries the worker's own token.
      expect((await client.heartbeat(worker.id)).id).toBe(worker.id);
      expect((await client.updateTaskCount(worker.id, 1)).currentTasks).toBe(1);
      expect((await client.recordTaskCompletion(worker.id, true, 20)).metrics.tasksCompleted).toBe(1);
      expect((await client.getWorker(worker.id)).id).toBe(worker.id);
      const stream = await client.openHeartbeatStream(worker.id);
      const outcome = await new Promise<Outcome>((resolve) => {
        stream.on("data", () => stream.end());
        stream.on("error", () => {});
        stream.on("status", (st) => resolve({ code: st.code, details: st.details }));
        stream.write({ workerId: worker.id, sequence: 1 } as never);
      });
      expect(codeName(outcome.code)).toBe("OK");
      await client.unregisterWorker(worker.id);
      expect(client.workerToken(worker.id)).toBeUndefined();
    } finally {
      restoreRoleTokens();
      client.close();
    }
  });

  it("WorkerNode registers with a worker-role token, then heartbeats, counts tasks and unregisters with its worker token; it renews the token on re-registration", async () => {
    const client = new WorkerRegistryClient({ address: s.address, token: T.worker, retry: false });
    const node = new WorkerNode({
      registration: { nodeId: "node-e2e", capabilities: ["node-e2e"], maxConcurrentTasks: 2 },
      client,
      heartbeatIntervalMs: 50,
      reconnectBaseMs: 20,
      reconnectMaxMs: 100,
    });
    try {
      let beats = 0;
      node.on("heartbeat", () => beats++);
      const first = await node.start();
      await eventually(() => beats >= 2, 5000, "heartbeats");
      const firstToken = client.workerToken(first.id);
      expect(firstToken).toMatch(WORKER_TOKEN);
      secret(firstToken!);

      // An admin removes the record: the node's next heartbeat finds it gone, and it re-registers with its role token.
      const reregistered = new Promise<{ previousId: string; workerId: string }>((resolve) => node.once("reregistered", resolve));
      await s.client.call("unregisterWorker", { workerId: first.id }, T.admin);
      const { previousId, workerId } = await reregistered;
      expect(previousId).toBe(first.id);
      const secondToken = client.workerToken(workerId);
      expect(secondToken).toMatch(WORKER_TOKEN);
      secret(secondToken!);
      expect(secondToken).not.toBe(firstToken);
      const beatsBefore = beats;
      await eventually(() => beats >= beatsBefore + 2, 5000, "heartbeats after re-registration");

      // Without a valid role token, everything the runtime does for its worker goes through the worker token.
      revokeRoleTokens();
      expect(await node.runTask(async () => "done")).toBe("done");
      const seen = await s.client.call("getWorker", { workerId }, T.admin);
      expect(seen.worker.metrics.tasksCompleted).toBe(1n);
      expect(seen.worker.currentTasks).toBe(0);
      await node.stop();
      expect(codeName((await s.client.outcome("getWorker", { workerId }, T.admin)).code)).toBe("NOT_FOUND");
    } finally {
      restoreRoleTokens();
      await node.stop().catch(() => undefined);
      client.close();
    }
  });
});

describe("log redaction", () => {
  it("createLogger redacts authorization, token and workerToken fields (top level and one level down) and metadata", () => {
    const capture = new LogCapture();
    const log = createLogger("trace", capture);
    const s = Array.from({ length: 10 }, (_, i) => `SECRET${i}-${randomBytes(8).toString("hex")}`);
    log.info(
      {
        workerId: "worker-1-visible",
        authorization: `Bearer ${s[0]}`,
        token: s[1],
        workerToken: s[2],
        metadata: { authorization: `Bearer ${s[3]}` },
        call: { authorization: `Bearer ${s[4]}`, token: s[5], workerToken: s[6], headers: { authorization: `Bearer ${s[7]}` } },
        headers: { authorization: `Bearer ${s[8]}` },
        request: { metadata: { authorization: s[9] } },
      },
      "request seen",
    );
    log.error({ authorization: `Bearer ${s[0]}` }, "an error");
    const text = capture.text();
    for (const value of s) expect(text).not.toContain(value);
    expect(text).toContain("[redacted]");
    expect(text).toContain("worker-1-visible");
    expect(capture.lines()).toHaveLength(2);
  });

  it("no role or worker token appears in any log line of the servers above (including failed attempts)", () => {
    const text = allLogs.map((l) => l.text()).join("");
    expect(text.length).toBeGreaterThan(0);
    // The servers did log the work (registrations, reloads): the check is not vacuous.
    expect(text).toContain("worker registered");
    expect(text).toContain("tokens reloaded");
    expect(SECRETS.size).toBeGreaterThan(200);
    const leaked = [...SECRETS].filter((token) => text.includes(token) || (WORKER_TOKEN.test(token) && text.includes(WORKER_TOKEN.exec(token)![2]!)));
    expect(leaked).toEqual([]);
  });
});
