/**
 * Every limit is enforced with RESOURCE_EXHAUSTED (or INVALID_ARGUMENT for
 * input limits) while the server stays up: after each refusal a normal call
 * still works, and freed slots can be used again.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TRANSPORT_LIMITS, startRegistryServer, type RegistryServer, type ServeOptions } from "../../src/app.js";
import { parseServeArgs } from "../../src/cli/serve-command.js";
import { DEFAULT_LIMITS } from "../../src/domain/registry-options.js";
import { FakeClock } from "../support/fake-clock.js";
import { tempDirs } from "../support/temp-dir.js";
import { codeName, hold, holdHealthWatch, holdReflectionStream, REGISTRATION, SecClient, statusWithin, type HeldStream } from "./support.js";

const dirs = tempDirs();
const servers: RegistryServer[] = [];
const clients: Array<SecClient | grpc.Client> = [];
/** Long-lived streams a test opened: cancelled after it, so the server's shutdown need not wait out its grace. */
const streams: HeldStream[] = [];

afterEach(async () => {
  for (const stream of streams.splice(0)) stream.call.cancel();
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.close();
});
afterAll(() => dirs.cleanup());

async function serve(options: Partial<ServeOptions> = {}): Promise<{ server: RegistryServer; address: string }> {
  const server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make("registry-limits-"), "registry.db"), logLevel: "silent", ...options });
  servers.push(server);
  const host = options.host ?? "127.0.0.1";
  return { server, address: `${host.includes(":") ? `[${host}]` : host}:${server.port}` };
}

/** A client on its own connection (grpc-js would otherwise share one subchannel between clients of the same address). */
function connect(address: string): SecClient {
  const client = new SecClient(address, undefined, { "grpc.use_local_subchannel_pool": 1 });
  clients.push(client);
  return client;
}

/** A normal call still works. */
async function stillServes(client: SecClient): Promise<void> {
  expect(codeName((await client.outcome("getRegistryStats")).code)).toBe("OK");
}

async function register(client: SecClient, request: object = REGISTRATION): Promise<string> {
  return (await client.call("registerWorker", request)).worker.id as string;
}

/** Opens a heartbeat stream for the worker; resolves once the first reply arrives (open), or with the refusal. */
async function beat(client: SecClient, workerId: string): Promise<{ stream: HeldStream; code: string }> {
  const call = client.heartbeatStream() as grpc.ClientDuplexStream<object, any>;
  const replied = new Promise<void>((resolve) => call.once("data", () => resolve()));
  const stream = hold(call);
  call.write({ workerId, sequence: 1 });
  const first = await Promise.race([replied.then(() => "OK"), stream.ended.then((s) => codeName(s.code))]);
  return { stream, code: first };
}

/** Opens a watch; "OPEN" if the server has not ended it within 300 ms, else the status name. */
async function watch(client: SecClient): Promise<{ stream: HeldStream; code: string }> {
  const stream = hold(client.watch({}));
  const status = await statusWithin(stream, 300);
  return { stream, code: status === undefined ? "OPEN" : codeName(status.code) };
}

describe("maxWorkers", () => {
  it("refuses a registration beyond the limit with RESOURCE_EXHAUSTED; unregistering makes room", async () => {
    const { address } = await serve({ registry: { limits: { maxWorkers: 3 } } });
    const client = connect(address);
    const ids = [await register(client), await register(client), await register(client)];
    const refused = await client.outcome("registerWorker", REGISTRATION);
    expect(codeName(refused.code)).toBe("RESOURCE_EXHAUSTED");
    expect(refused.details).toMatch(/3 workers/);
    await stillServes(client);
    expect((await client.call("getRegistryStats")).totalWorkers).toBe(3);
    await client.call("unregisterWorker", { workerId: ids[0] });
    await register(client);
    expect(codeName((await client.outcome("registerWorker", REGISTRATION)).code)).toBe("RESOURCE_EXHAUSTED");
  });
});

describe("maxWorkers under concurrency", () => {
  // registerWorker checks the count before it awaits the store write: a burst of calls in
  // flight at once must not all pass the check.
  it("concurrent registrations cannot exceed the limit", async () => {
    const { address, server } = await serve({ registry: { limits: { maxWorkers: 3 } } });
    const clientsForBurst = Array.from({ length: 5 }, () => connect(address));
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => clientsForBurst[i % 5]!.outcome("registerWorker", REGISTRATION)));
    const ok = outcomes.filter((o) => o.code === 0).length;
    expect({ ok, stored: server.registry.getRegistryStats().totalWorkers }).toEqual({ ok: 3, stored: 3 });
    expect(outcomes.filter((o) => o.code !== 0).every((o) => codeName(o.code) === "RESOURCE_EXHAUSTED")).toBe(true);
  });
});

describe("maxStreamsPerConnection", () => {
  it("refuses stream N+1 on one connection; other connections and freed slots still work", async () => {
    const { address } = await serve({ limits: { maxStreamsPerConnection: 3 } });
    const client = connect(address);
    const ids = await Promise.all(Array.from({ length: 5 }, () => register(client)));
    const open = [await beat(client, ids[0]!), await beat(client, ids[1]!), await beat(client, ids[2]!)];
    expect(open.map((o) => o.code)).toEqual(["OK", "OK", "OK"]);
    const fourth = await beat(client, ids[3]!);
    expect(fourth.code).toBe("RESOURCE_EXHAUSTED");
    // Watch streams count against the same per-connection limit.
    expect((await watch(client)).code).toBe("RESOURCE_EXHAUSTED");
    await stillServes(client);
    // Another connection is not affected.
    const other = connect(address);
    expect((await beat(other, ids[3]!)).code).toBe("OK");
    // Closing a stream frees its slot on the first connection.
    open[0]!.stream.call.cancel();
    await open[0]!.stream.ended;
    await expect.poll(async () => (await beat(client, ids[4]!)).code, { timeout: 3000, interval: 50 }).toBe("OK");
  });

  it("defaults to at least 100 streams per connection: 150 heartbeat streams share one connection", async () => {
    expect(DEFAULT_TRANSPORT_LIMITS.maxStreamsPerConnection).toBeGreaterThanOrEqual(100);
    const { address } = await serve();
    const client = connect(address);
    const ids: string[] = [];
    for (let i = 0; i < 150; i++) ids.push(await register(client));
    const opened = await Promise.all(ids.map((id) => beat(client, id)));
    expect(opened.filter((o) => o.code !== "OK").map((o) => o.code)).toEqual([]);
    for (const o of opened) o.stream.call.cancel();
  });
});

describe("maxStreams", () => {
  it("refuses a stream beyond the server-wide limit, across connections; a freed slot is reusable", async () => {
    expect(DEFAULT_TRANSPORT_LIMITS.maxStreams).toBeGreaterThan(10_000);
    // Every stream here comes from one address: a share of 1 lets it hold them all, so the server-wide limit answers.
    const { address } = await serve({ limits: { maxStreams: 4, maxStreamShare: 1 } });
    const setup = connect(address);
    const ids = await Promise.all(Array.from({ length: 6 }, () => register(setup)));
    const open = [];
    for (let i = 0; i < 4; i++) open.push(await beat(connect(address), ids[i]!));
    expect(open.map((o) => o.code)).toEqual(["OK", "OK", "OK", "OK"]);
    const late = connect(address);
    expect((await beat(late, ids[4]!)).code).toBe("RESOURCE_EXHAUSTED");
    expect((await watch(late)).code).toBe("RESOURCE_EXHAUSTED");
    await stillServes(late);
    // A half-closed stream (the worker said goodbye) frees its slot too.
    (open[1]!.stream.call as grpc.ClientDuplexStream<object, any>).end();
    await open[1]!.stream.ended;
    await expect.poll(async () => (await beat(late, ids[5]!)).code, { timeout: 3000, interval: 50 }).toBe("OK");
  });
});

describe("maxWatchers", () => {
  it("refuses a watch beyond the limit; heartbeat streams are not affected; a cancelled watch frees its slot", async () => {
    const { address } = await serve({ limits: { maxWatchers: 2 } });
    const a = connect(address);
    const b = connect(address);
    const first = await watch(a);
    const second = await watch(b);
    expect([first.code, second.code]).toEqual(["OPEN", "OPEN"]);
    const third = await watch(connect(address));
    expect(third.code).toBe("RESOURCE_EXHAUSTED");
    await stillServes(a);
    const id = await register(a);
    expect((await beat(connect(address), id)).code).toBe("OK");
    first.stream.call.cancel();
    await first.stream.ended;
    await expect.poll(async () => {
      const next = await watch(connect(address));
      if (next.code === "OPEN") next.stream.call.cancel();
      return next.code;
    }, { timeout: 3000, interval: 50 }).toBe("OPEN");
    second.stream.call.cancel();
  });
});

/** "OPEN" if the stream is still open after `ms`, else its status name and details. */
async function outcomeWithin(stream: HeldStream, ms = 300): Promise<string> {
  const status = await statusWithin(stream, ms);
  return status === undefined ? "OPEN" : `${codeName(status.code)}: ${status.details}`;
}

/** Opens a health Watch or a reflection stream on a connection of its own (or on `client`); the client is closed after the test. */
function introspection(kind: "health" | "reflection", address: string, token?: string, client?: grpc.Client): HeldStream {
  const opened = kind === "health" ? holdHealthWatch(address, token, client) : holdReflectionStream(address, token, client);
  clients.push(opened.client);
  streams.push(opened.stream);
  return opened.stream;
}

describe("health and reflection streams", () => {
  // Regression: grpc.health.v1 Watch and reflection streams, served by libraries and not by our handlers, bypassed
  // every stream limit; 30,000 opened without a token took 300 MB.
  it("unauthenticated health and reflection streams count against --max-streams; the excess is refused and closed ones give their slots back", async () => {
    const { address } = await serve({ limits: { maxStreams: 4, maxStreamShare: 1 } });
    const held = [introspection("health", address), introspection("health", address), introspection("reflection", address), introspection("reflection", address)];
    expect(await Promise.all(held.map((h) => outcomeWithin(h)))).toEqual(["OPEN", "OPEN", "OPEN", "OPEN"]);
    const full = "RESOURCE_EXHAUSTED: the server has 4 open streams, its limit (--max-streams); retry later";
    expect(await outcomeWithin(introspection("health", address), 2000)).toBe(full);
    expect(await outcomeWithin(introspection("reflection", address), 2000)).toBe(full);
    // They hold the same slots as the registry's own streams.
    expect((await watch(connect(address))).code).toBe("RESOURCE_EXHAUSTED");
    // A health check is a unary call: not a stream, never refused for streams.
    expect(codeName((await (await import("./support.js")).healthCheck(address)).code)).toBe("OK");

    // A cancelled health watch gives its slot back...
    held[0]!.call.cancel();
    await held[0]!.ended;
    await expect.poll(async () => {
      const next = introspection("health", address);
      return outcomeWithin(next);
    }, { timeout: 3000, interval: 50 }).toBe("OPEN");
    // ...and so does a reflection stream that ends with a status (its client half-closed).
    (held[2]!.call as grpc.ClientDuplexStream<object, any>).end();
    expect(codeName((await held[2]!.ended).code)).toBe("OK");
    await expect.poll(async () => outcomeWithin(introspection("reflection", address)), { timeout: 3000, interval: 50 }).toBe("OPEN");
  });

  it("they count against --max-streams-per-connection too", async () => {
    const { address } = await serve({ limits: { maxStreamsPerConnection: 2, maxStreamShare: 1 } });
    const shared = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    clients.push(shared);
    const held = [introspection("health", address, undefined, shared), introspection("reflection", address, undefined, shared)];
    expect(await Promise.all(held.map((h) => outcomeWithin(h)))).toEqual(["OPEN", "OPEN"]);
    expect(await outcomeWithin(introspection("health", address, undefined, shared), 2000)).toBe(
      "RESOURCE_EXHAUSTED: this connection already has 2 open streams, its limit (--max-streams-per-connection); open another connection",
    );
    expect(await outcomeWithin(introspection("health", address))).toBe("OPEN");
  });

  it("with a tokens file they count alike, open or authenticated; a refused token takes no slot", async () => {
    const dir = dirs.make("registry-limits-tokens-");
    const admin = "admin-token-for-limits-0123456789";
    writeFileSync(join(dir, "tokens.txt"), `admin ${admin}\n`);
    const { address } = await serve({ limits: { maxStreams: 3, maxStreamShare: 1 }, security: { tokensFile: join(dir, "tokens.txt"), authenticateReflection: true } });
    const held = [introspection("health", address), introspection("health", address), introspection("reflection", address, admin)];
    expect(await Promise.all(held.map((h) => outcomeWithin(h)))).toEqual(["OPEN", "OPEN", "OPEN"]);
    expect(await outcomeWithin(introspection("health", address), 2000)).toMatch(/^RESOURCE_EXHAUSTED: .*\(--max-streams\)/);
    expect(await outcomeWithin(introspection("reflection", address, admin), 2000)).toMatch(/^RESOURCE_EXHAUSTED: .*\(--max-streams\)/);
    held[2]!.call.cancel();
    await held[2]!.ended;
    expect(await outcomeWithin(introspection("reflection", address), 2000)).toMatch(/^UNAUTHENTICATED: /);
    await expect.poll(async () => outcomeWithin(introspection("reflection", address, admin)), { timeout: 3000, interval: 50 }).toBe("OPEN");
  });
});

describe("maxStreamShare", () => {
  // Regression: one worker token could open idle heartbeat streams up to --max-streams; then every other
  // worker's stream and every orchestrator's watch was refused.
  it("one principal can take no more than its share of the stream slots: one worker token stops at its share, others still get theirs", async () => {
    const dir = dirs.make("registry-limits-share-");
    const tokens = { worker: "worker-token-for-share-0123456789", orchestrator: "orchestrator-token-for-share-0123456789" };
    writeFileSync(join(dir, "tokens.txt"), `worker ${tokens.worker}\norchestrator ${tokens.orchestrator}\n`);
    const { address } = await serve({ limits: { maxStreams: 8, maxStreamShare: 0.25 }, security: { tokensFile: join(dir, "tokens.txt") } });
    const setup = connect(address);
    const a = await setup.call("registerWorker", REGISTRATION, tokens.worker);
    const b = await setup.call("registerWorker", REGISTRATION, tokens.worker);
    // Idle streams (no first heartbeat), each on its own connection: the connection limit plays no part.
    const idle = Array.from({ length: 5 }, () => hold(connect(address).heartbeatStream(a.workerToken)));
    const outcomes = await Promise.all(idle.map((h) => outcomeWithin(h, 500)));
    expect(outcomes).toEqual([
      "OPEN",
      "OPEN",
      ...Array.from({ length: 3 }, () => `RESOURCE_EXHAUSTED: worker ${a.worker.id}'s token already holds 2 open streams, its share of the server's limit (--max-stream-share 0.25 of --max-streams 8); close some first`),
    ]);
    // Another worker, and an orchestrator, still get slots.
    const other = connect(address);
    const call = other.heartbeatStream(b.workerToken);
    const replied = new Promise<string>((resolve) => call.once("data", () => resolve("OK")));
    const held = hold(call);
    call.write({ workerId: b.worker.id, sequence: 1 });
    expect(await Promise.race([replied, held.ended.then((s) => codeName(s.code))])).toBe("OK");
    expect(await outcomeWithin(hold(connect(address).watch({}, tokens.orchestrator)))).toBe("OPEN");
  });

  it("without tokens the principal is the peer address: one address holds at most its share, health and reflection streams included", async () => {
    const { address } = await serve({ limits: { maxStreams: 8, maxStreamShare: 0.25 } });
    const client = connect(address);
    const id = await register(client);
    expect((await beat(connect(address), id)).code).toBe("OK");
    expect(await outcomeWithin(introspection("health", address))).toBe("OPEN");
    const refused = "RESOURCE_EXHAUSTED: the address 127.0.0.1 already holds 2 open streams, its share of the server's limit (--max-stream-share 0.25 of --max-streams 8); close some first";
    expect(await outcomeWithin(introspection("reflection", address), 2000)).toBe(refused);
    expect((await watch(connect(address))).code).toBe("RESOURCE_EXHAUSTED");
  });

  it("the default share lets one load-generator host hold 10,000 heartbeat streams under the default --max-streams", () => {
    const perPrincipal = Math.floor(DEFAULT_TRANSPORT_LIMITS.maxStreams * DEFAULT_TRANSPORT_LIMITS.maxStreamShare);
    expect(perPrincipal).toBeGreaterThanOrEqual(10_000);
    expect(perPrincipal).toBeLessThan(DEFAULT_TRANSPORT_LIMITS.maxStreams);
  });
});

describe("firstHeartbeatTimeoutMs", () => {
  // Regression: a heartbeat stream that never sent its first message held its slot for ever.
  it("a heartbeat stream that sends no first heartbeat within the timeout is ended with DEADLINE_EXCEEDED and gives its slot back", async () => {
    const { address } = await serve({ limits: { firstHeartbeatTimeoutMs: 300, maxStreams: 1 } });
    const client = connect(address);
    const id = await register(client);
    const idle = hold(client.heartbeatStream());
    expect(await outcomeWithin(idle, 3000)).toBe(
      "DEADLINE_EXCEEDED: no first heartbeat within 300 ms of opening the stream: send a heartbeat naming the worker as soon as the stream opens",
    );
    // The slot is free again; a stream that heartbeats at once is served, and outlives the timeout.
    const { stream, code } = await beat(client, id);
    expect(code).toBe("OK");
    expect(await outcomeWithin(stream, 700)).toBe("OPEN");
  });

  it("defaults to 10 s", () => {
    expect(DEFAULT_TRANSPORT_LIMITS.firstHeartbeatTimeoutMs).toBe(10_000);
  });
});

describe("maxMessageBytes", () => {
  it("a RegisterWorker larger than the limit gets RESOURCE_EXHAUSTED from grpc-js; the same connection keeps working", async () => {
    const { address, server } = await serve({ limits: { maxMessageBytes: 4096 } });
    const client = connect(address);
    const huge = await client.outcome("registerWorker", { ...REGISTRATION, nodeId: "n".repeat(10_000) });
    expect(codeName(huge.code)).toBe("RESOURCE_EXHAUSTED");
    const manyCaps = await client.outcome("registerWorker", { ...REGISTRATION, capabilities: Array.from({ length: 2000 }, (_, i) => `c${i}`) });
    expect(codeName(manyCaps.code)).toBe("RESOURCE_EXHAUSTED");
    expect(server.registry.getRegistryStats().totalWorkers).toBe(0);
    await stillServes(client);
    // Just under the byte limit, but beyond maxNodeIdLength: the input limit answers.
    expect(codeName((await client.outcome("registerWorker", { ...REGISTRATION, nodeId: "n".repeat(3000) })).code)).toBe("INVALID_ARGUMENT");
    await register(client);
  });

  it("defaults to 1 MiB", async () => {
    expect(DEFAULT_TRANSPORT_LIMITS.maxMessageBytes).toBe(1024 * 1024);
    const { address } = await serve();
    const client = connect(address);
    expect(codeName((await client.outcome("registerWorker", { ...REGISTRATION, nodeId: "n".repeat(1024 * 1024 + 10) })).code)).toBe("RESOURCE_EXHAUSTED");
    await stillServes(client);
  });
});

describe("registrationsPerSecondPerPeer", () => {
  it("refuses registrations beyond the rate from one peer address, on any of its connections, until time passes", async () => {
    const clock = new FakeClock();
    const { address } = await serve({ clock, limits: { registrationsPerSecondPerPeer: 3 } });
    const client = connect(address);
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push(codeName((await client.outcome("registerWorker", REGISTRATION)).code));
    expect(codes).toEqual(["OK", "OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    // Another connection from the same address shares the bucket.
    const second = connect(address);
    expect(codeName((await second.outcome("registerWorker", REGISTRATION)).code)).toBe("RESOURCE_EXHAUSTED");
    // Only registrations are limited.
    await stillServes(client);
    clock.advance(400);
    expect(codeName((await client.outcome("registerWorker", REGISTRATION)).code)).toBe("OK");
    expect(codeName((await client.outcome("registerWorker", REGISTRATION)).code)).toBe("RESOURCE_EXHAUSTED");
    clock.advance(1000);
    const after = [];
    for (let i = 0; i < 4; i++) after.push(codeName((await second.outcome("registerWorker", REGISTRATION)).code));
    expect(after).toEqual(["OK", "OK", "OK", "RESOURCE_EXHAUSTED"]);
  });

  it("a refused registration stores nothing", async () => {
    const clock = new FakeClock();
    const { address, server } = await serve({ clock, limits: { registrationsPerSecondPerPeer: 1 } });
    const client = connect(address);
    await register(client);
    expect(codeName((await client.outcome("registerWorker", REGISTRATION)).code)).toBe("RESOURCE_EXHAUSTED");
    expect(server.registry.getRegistryStats().totalWorkers).toBe(1);
  });

  // Regression: grpc-js writes IPv6 peers without brackets, so the bucket was keyed per connection.
  it("applies per IPv6 peer address too, not per connection", async () => {
    const clock = new FakeClock();
    const { address } = await serve({ host: "::1", clock, limits: { registrationsPerSecondPerPeer: 2 } });
    const first = connect(address);
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push(codeName((await first.outcome("registerWorker", REGISTRATION)).code));
    expect(codes).toEqual(["OK", "OK", "RESOURCE_EXHAUSTED"]);
    const second = connect(address);
    expect(codeName((await second.outcome("registerWorker", REGISTRATION)).code)).toBe("RESOURCE_EXHAUSTED");
  });
});

describe("input limits: INVALID_ARGUMENT", () => {
  it("maxCapabilities, maxCapabilityLength and maxNodeIdLength are enforced at and beyond their values", async () => {
    const { address, server } = await serve({ registry: { limits: { maxCapabilities: 3, maxCapabilityLength: 8, maxNodeIdLength: 10 } } });
    const client = connect(address);
    const code = async (request: object) => codeName((await client.outcome("registerWorker", request)).code);
    const results = {
      capabilitiesAtLimit: await code({ ...REGISTRATION, capabilities: ["a", "b", "c"] }),
      capabilitiesBeyond: await code({ ...REGISTRATION, capabilities: ["a", "b", "c", "d"] }),
      capabilityLengthAtLimit: await code({ ...REGISTRATION, capabilities: ["x".repeat(8)] }),
      capabilityLengthBeyond: await code({ ...REGISTRATION, capabilities: ["x".repeat(9)] }),
      nodeIdAtLimit: await code({ ...REGISTRATION, nodeId: "n".repeat(10) }),
      nodeIdBeyond: await code({ ...REGISTRATION, nodeId: "n".repeat(11) }),
      filterCapabilitiesBeyond: codeName((await client.outcome("discoverWorkers", { filter: { capabilities: ["a", "b", "c", "d"] } })).code),
      filterCapabilityLengthBeyond: codeName((await client.outcome("getWorkersForLoadBalancing", { filter: { capabilities: ["x".repeat(9)] } })).code),
      acquireFilterBeyond: codeName((await client.outcome("acquireWorker", { filter: { capabilities: ["a", "b", "c", "d"] } })).code),
    };
    expect(results).toEqual({
      capabilitiesAtLimit: "OK",
      capabilitiesBeyond: "INVALID_ARGUMENT",
      capabilityLengthAtLimit: "OK",
      capabilityLengthBeyond: "INVALID_ARGUMENT",
      nodeIdAtLimit: "OK",
      nodeIdBeyond: "INVALID_ARGUMENT",
      filterCapabilitiesBeyond: "INVALID_ARGUMENT",
      filterCapabilityLengthBeyond: "INVALID_ARGUMENT",
      acquireFilterBeyond: "INVALID_ARGUMENT",
    });
    expect(server.registry.getRegistryStats().totalWorkers).toBe(3);
    await stillServes(client);
  });

  it("the defaults are documented values: 64 capabilities of 64 characters, node ids of 253", () => {
    expect(DEFAULT_LIMITS).toMatchObject({ maxCapabilities: 64, maxCapabilityLength: 64, maxNodeIdLength: 253, maxWorkers: 100_000 });
  });
});

describe("configuration", () => {
  it("every limit has a serve flag", () => {
    const options = parseServeArgs(
      [
        "--max-workers", "11",
        "--max-streams-per-connection", "12",
        "--max-streams", "13",
        "--max-watchers", "14",
        "--max-registrations-per-second", "15",
        "--max-message-bytes", "16000",
        "--max-capabilities", "17",
        "--max-capability-length", "18",
        "--max-node-id-length", "19",
        "--max-stream-share", "0.5",
        "--first-heartbeat-timeout", "5s",
      ],
      {},
    );
    expect(options.limits).toEqual({
      maxStreamsPerConnection: 12,
      maxStreams: 13,
      maxWatchers: 14,
      registrationsPerSecondPerPeer: 15,
      maxMessageBytes: 16000,
      maxStreamShare: 0.5,
      firstHeartbeatTimeoutMs: 5000,
    });
    expect(options.registry?.limits).toEqual({ maxWorkers: 11, maxCapabilities: 17, maxCapabilityLength: 18, maxNodeIdLength: 19 });
  });
});
