/**
 * Hostile input, property-based (fast-check): every RPC gets well-formed
 * messages with random, boundary and malformed field values, and every
 * method path gets raw bytes. Well-formed messages are never answered
 * INTERNAL or UNKNOWN (nor UNAVAILABLE: the server does not go away); raw
 * bytes may get any status, but the server keeps serving and the connection
 * stays usable. Afterwards the database passes `PRAGMA integrity_check` and
 * every stored worker passes the validation of a new registration.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import { validateRegistration, validateWorkerId } from "../../src/domain/validation.js";
import { createLogger } from "../../src/log.js";
import { WorkerRegistryService } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { tempDirs } from "../support/temp-dir.js";
import { codeName, LogCapture, RPCS, SecClient, type Outcome } from "./support.js";

const LIMITS = compileRegistryOptions().limits;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
/** What a well-formed message must never be answered with. */
const NEVER = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.UNAVAILABLE]);

const dirs = tempDirs();
const dir = dirs.make("registry-fuzz-");
const dbPath = join(dir, "registry.db");
const logs = new LogCapture();
let server: RegistryServer;
let client: SecClient;
let closed = false;
/** Cases run per property, reported at the end. */
const counts: Record<string, number> = {};

/** Ids seen alive, so that calls name real workers and reservations as well as made-up ones. */
const workerPool: string[] = [];
const reservationPool: string[] = [];

beforeAll(async () => {
  server = await startRegistryServer({
    host: "127.0.0.1",
    port: 0,
    dbPath,
    logger: createLogger("warn", logs),
    // Registrations are fuzzed by the thousand: the rate limit is tested in limits.test.ts.
    limits: { registrationsPerSecondPerPeer: 1_000_000 },
  });
  client = new SecClient(`127.0.0.1:${server.port}`, undefined, { "grpc.use_local_subchannel_pool": 1 });
  for (let i = 0; i < 5; i++) {
    const r = await client.call("registerWorker", { nodeId: `seed-${i}`, capabilities: ["build", "test"], maxConcurrentTasks: 50 });
    workerPool.push(r.worker.id);
  }
});
afterAll(async () => {
  client.close();
  if (!closed) await server.close();
  dirs.cleanup();
  console.log(`fuzz cases: ${JSON.stringify(counts)}; total ${Object.values(counts).reduce((a, b) => a + b, 0)}`);
});

// ---------------------------------------------------------------- arbitraries

const controlAndOdd = fc.constantFrom("\u0000", "\n", "\r", "\t", "\u001b", "\u007f", "\u0085", "\u00a0", "\u200b", "\u2028", "\ufeff", "\ud800", "\udfff", "é", "💥", "名", " ", "/", "%", "'", '"', "\\");

/** Strings: empty, ordinary, any code points (lone surrogates too), control characters, around the length limits, huge. */
const text = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: controlAndOdd, minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60, max: 70 }).map((n) => "c".repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 250, max: 256 }).map((n) => "n".repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 100_000 }).map((n) => "h".repeat(n)) },
);

/**
 * The same strings without the huge ones, for HeartbeatStream: a huge worker_id sent
 * mid-stream hits the bug pinned down by "a mismatched worker_id of 100 kB mid-stream"
 * below, and would make this property fail at random instead of naming it once.
 */
const streamText = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: controlAndOdd, minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.integer({ min: 250, max: 5000 }).map((n) => "n".repeat(n)) },
);

/** Capabilities: mostly valid names (so registrations get through), with the hostile strings mixed in. */
const capability = fc.oneof({ weight: 4, arbitrary: fc.constantFrom("build", "test", "gpu", "a", "x".repeat(64)) }, { weight: 3, arbitrary: text });

const int32 = fc.oneof(
  fc.integer({ min: INT32_MIN, max: INT32_MAX }),
  fc.constantFrom(0, 1, -1, 2, 100, 9_999, 10_000, 10_001, INT32_MAX, INT32_MIN),
  fc.integer({ min: -5, max: 50 }),
);
const uint32 = fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.constantFrom(0, 1, 2 ** 31, 2 ** 32 - 1));
const uint64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 50n }), fc.constantFrom(0n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n));
const double = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 0, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, LIMITS.maxTaskDurationMs, LIMITS.maxTaskDurationMs + 1, 1e-300),
  fc.double({ min: 0, max: 1e6, noNaN: true }),
);
/** HealthStatus values: the enum's own, UNSPECIFIED, and unknown numbers. */
const health = fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: INT32_MIN, max: INT32_MAX }));

/** A worker id: a live one, a well-formed unknown one, or any string. */
const workerId = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((i) => workerPool[i % workerPool.length] ?? "") },
  { weight: 1, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 16n - 1n }), fc.stringMatching(/^[a-z0-9]{1,32}$/)).map(([t, r]) => `worker-${t}-${r}`) },
  { weight: 2, arbitrary: text },
);
const streamWorkerId = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((i) => workerPool[i % workerPool.length] ?? "") },
  { weight: 1, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 16n - 1n }), fc.stringMatching(/^[a-z0-9]{1,32}$/)).map(([t, r]) => `worker-${t}-${r}`) },
  { weight: 2, arbitrary: streamText },
);
const reservationId = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((i) => reservationPool[i % Math.max(1, reservationPool.length)] ?? "") },
  { weight: 1, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 16n - 1n }), fc.stringMatching(/^[a-z0-9]{1,32}$/)).map(([t, r]) => `rsv-${t}-${r}`) },
  { weight: 2, arbitrary: text },
);
const filter = fc.option(
  fc.record({
    capabilities: fc.array(capability, { maxLength: 70 }),
    healthStatuses: fc.array(health, { maxLength: 5 }),
    minAvailableCapacity: int32,
  }),
  { nil: undefined },
);

// ---------------------------------------------------------------- helpers

/** The message as the server decodes it (strings with lone surrogates come out with U+FFFD). */
function roundTrip<T extends DescMessage>(schema: T, init: object) {
  return fromBinary(schema, toBinary(schema, create(schema, init as never)));
}

function assertWellFormedAnswer(method: string, request: unknown, outcome: Outcome): void {
  if (NEVER.has(outcome.code)) {
    throw new Error(`${method} answered ${codeName(outcome.code)} (${outcome.details}) to ${JSON.stringify(request, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`);
  }
}

const RUN = (numRuns: number) => ({ numRuns, endOnFailure: true });

async function unaryProperty<T>(method: string, arbitrary: fc.Arbitrary<T>, numRuns: number, check?: (request: T, outcome: Outcome) => void | Promise<void>) {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(arbitrary, async (request) => {
      runs++;
      const outcome = await client.outcome(method, request as object);
      assertWellFormedAnswer(method, request, outcome);
      await check?.(request, outcome);
    }),
    RUN(numRuns),
  );
  counts[method] = (counts[method] ?? 0) + runs;
}

const validDuration = (d: number) => Number.isFinite(d) && d >= 0 && d <= LIMITS.maxTaskDurationMs;

// ---------------------------------------------------------------- well-formed messages

describe("well-formed messages with hostile values: never INTERNAL, UNKNOWN or UNAVAILABLE", () => {
  it("RegisterWorker: answers exactly as validateRegistration decides, and stores what was sent", { timeout: 120_000 }, async () => {
    const request = fc.record({ nodeId: text, capabilities: fc.array(capability, { maxLength: 70 }), maxConcurrentTasks: int32 });
    await unaryProperty("registerWorker", request, 1500, (sent, outcome) => {
      const received = roundTrip(WorkerRegistryService.method.registerWorker.input, sent);
      let valid = true;
      try {
        validateRegistration(received, LIMITS);
      } catch {
        valid = false;
      }
      expect(codeName(outcome.code), JSON.stringify(sent)).toBe(valid ? "OK" : "INVALID_ARGUMENT");
      if (outcome.code === grpc.status.OK) {
        const worker = outcome.response.worker;
        expect(worker.nodeId).toBe(received.nodeId);
        expect(worker.capabilities).toEqual(received.capabilities);
        expect(worker.maxConcurrentTasks).toBe(received.maxConcurrentTasks);
        workerPool.push(worker.id);
      }
    });
  });

  it("Heartbeat and GetWorker", { timeout: 60_000 }, async () => {
    await unaryProperty("heartbeat", fc.record({ workerId }), 400);
    await unaryProperty("getWorker", fc.record({ workerId }), 400, (sent, outcome) => {
      if (outcome.code === grpc.status.OK) expect(outcome.response.worker.id).toBe(sent.workerId);
    });
  });

  it("UpdateTaskCount: a count outside 0..max is never accepted", { timeout: 60_000 }, async () => {
    await unaryProperty("updateTaskCount", fc.record({ workerId, delta: int32 }), 800, (_sent, outcome) => {
      if (outcome.code === grpc.status.OK) {
        const w = outcome.response.worker;
        expect(w.currentTasks).toBeGreaterThanOrEqual(0);
        expect(w.currentTasks).toBeLessThanOrEqual(w.maxConcurrentTasks);
      }
    });
  });

  it("RecordTaskCompletion: a NaN, infinite, negative or too long duration is never accepted", { timeout: 60_000 }, async () => {
    await unaryProperty("recordTaskCompletion", fc.record({ workerId, success: fc.boolean(), durationMs: double }), 800, (sent, outcome) => {
      if (!validDuration(sent.durationMs)) expect(["INVALID_ARGUMENT", "NOT_FOUND"], `duration ${sent.durationMs}`).toContain(codeName(outcome.code));
      if (outcome.code === grpc.status.OK) expect(Number.isFinite(outcome.response.worker.metrics.averageTaskDurationMs)).toBe(true);
    });
  });

  it("DiscoverWorkers and GetWorkersForLoadBalancing", { timeout: 60_000 }, async () => {
    await unaryProperty("discoverWorkers", fc.record({ filter, pageSize: int32, pageToken: fc.oneof(workerId, text) }), 600);
    await unaryProperty("getWorkersForLoadBalancing", fc.record({ filter, limit: int32 }), 600, (_sent, outcome) => {
      if (outcome.code === grpc.status.OK) for (const r of outcome.response.workers) expect(Number.isFinite(r.priority)).toBe(true);
    });
  });

  it("GetRegistryStats", { timeout: 30_000 }, async () => {
    await unaryProperty("getRegistryStats", fc.constant({}), 50, (_sent, outcome) => {
      expect(codeName(outcome.code)).toBe("OK");
      expect(Number.isFinite(outcome.response.successRate)).toBe(true);
    });
  });

  it("AcquireWorker and ReleaseWorker: a bad duration is never accepted", { timeout: 60_000 }, async () => {
    await unaryProperty("acquireWorker", fc.record({ filter }), 600, (_sent, outcome) => {
      if (outcome.code === grpc.status.OK) reservationPool.push(outcome.response.reservationId);
    });
    expect(reservationPool.length).toBeGreaterThan(0);
    await unaryProperty("releaseWorker", fc.record({ reservationId, success: fc.boolean(), durationMs: double }), 800, (sent, outcome) => {
      if (!validDuration(sent.durationMs)) expect(["INVALID_ARGUMENT", "NOT_FOUND"], `duration ${sent.durationMs}`).toContain(codeName(outcome.code));
    });
  });

  it("HeartbeatStream: sequences of heartbeats with hostile ids and sequence numbers", { timeout: 60_000 }, async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ workerId: streamWorkerId, sequence: uint32 }), { minLength: 1, maxLength: 4 }), async (messages) => {
        runs++;
        const outcome = await new Promise<Outcome>((resolve) => {
          const stream = client.heartbeatStream();
          const timer = setTimeout(() => stream.cancel(), 5000);
          stream.on("data", () => {});
          stream.on("error", () => {});
          stream.on("status", (s: grpc.StatusObject) => {
            clearTimeout(timer);
            resolve({ code: s.code, details: s.details });
          });
          for (const m of messages) stream.write(m);
          stream.end();
        });
        assertWellFormedAnswer("heartbeatStream", messages, outcome);
        expect(outcome.code, outcome.details).not.toBe(grpc.status.CANCELLED);
      }),
      RUN(400),
    );
    counts.heartbeatStream = runs;
  });

  it("WatchWorkers: hostile filters and start revisions", { timeout: 60_000 }, async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.record({ filter, startRevision: uint64 }), async (request) => {
        runs++;
        const outcome = await new Promise<Outcome>((resolve) => {
          const call = client.watch(request);
          let cancelledByUs = false;
          const timer = setTimeout(() => {
            cancelledByUs = true;
            call.cancel();
          }, 30);
          call.on("data", () => {});
          call.on("error", () => {});
          call.on("status", (s: grpc.StatusObject) => {
            clearTimeout(timer);
            resolve({ code: cancelledByUs ? grpc.status.OK : s.code, details: s.details });
          });
        });
        assertWellFormedAnswer("watchWorkers", request, outcome);
      }),
      RUN(400),
    );
    counts.watchWorkers = runs;
  });

  // Regression: a huge worker_id switched mid-stream was echoed whole and stalled the connection.
  it("a mismatched worker_id of 100 kB mid-stream is answered INVALID_ARGUMENT", async () => {
    const worker = (await client.call("registerWorker", { nodeId: "stream-bound", capabilities: ["x"], maxConcurrentTasks: 1 })).worker.id as string;
    const own = new SecClient(`127.0.0.1:${server.port}`, undefined, { "grpc.use_local_subchannel_pool": 1 });
    const outcome = await new Promise<Outcome>((resolve) => {
      const stream = own.heartbeatStream();
      const timer = setTimeout(() => stream.cancel(), 3000);
      stream.on("data", () => {});
      stream.on("error", () => {});
      stream.on("status", (s: grpc.StatusObject) => {
        clearTimeout(timer);
        resolve({ code: s.code, details: s.details });
      });
      stream.write({ workerId: worker, sequence: 1 });
      stream.write({ workerId: "h".repeat(100_000), sequence: 2 });
      stream.end();
    }).finally(() => own.close());
    expect(codeName(outcome.code)).toBe("INVALID_ARGUMENT");
    expect(outcome.details.length).toBeLessThan(1000);
  });

  it("UnregisterWorker", { timeout: 60_000 }, async () => {
    await unaryProperty("unregisterWorker", fc.record({ workerId }), 300);
  });

  it("the server is still serving, and nothing was logged as an unexpected failure", async () => {
    expect(codeName((await client.outcome("getRegistryStats")).code)).toBe("OK");
    const fresh = new SecClient(`127.0.0.1:${server.port}`, undefined, { "grpc.use_local_subchannel_pool": 1 });
    try {
      expect((await fresh.call("registerWorker", { nodeId: "after-fuzz", capabilities: ["ok"], maxConcurrentTasks: 1 })).worker.nodeId).toBe("after-fuzz");
    } finally {
      fresh.close();
    }
    const errors = logs.lines().filter((l) => Number(l.level) >= 50);
    expect(errors).toEqual([]);
  });
});

// ---------------------------------------------------------------- authorization metadata

describe("hostile authorization metadata", () => {
  it("random authorization values always get UNAUTHENTICATED, never anything else", { timeout: 60_000 }, async () => {
    const tokensFile = join(dir, "tokens.txt");
    writeFileSync(tokensFile, "admin fuzz-admin-token-0123456789\n");
    const authServer = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dir, "auth.db"), logger: createLogger("warn", logs), security: { tokensFile } });
    const authClient = new SecClient(`127.0.0.1:${authServer.port}`);
    const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 120 });
    const value = fc.oneof(
      printable,
      printable.map((t) => `Bearer ${t}`),
      fc.tuple(fc.stringMatching(/^worker-\d{1,16}-[a-z0-9]{1,32}$/), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/)).map(([id, s]) => `Bearer ${id}.${s}x`),
      fc.stringMatching(/^[A-Za-z0-9_-]{64}$/).map((t) => `Bearer sha256:${t}`),
    );
    let runs = 0;
    try {
      await fc.assert(
        fc.asyncProperty(value, fc.constantFrom("getRegistryStats", "registerWorker", "discoverWorkers", "acquireWorker"), async (authorization, method) => {
          runs++;
          const metadata = new grpc.Metadata();
          metadata.set("authorization", authorization);
          const definition = (await import("./support.js")).DEFINITION[method]!;
          const code = await new Promise<number>((resolve) =>
            authClient.raw.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, method === "registerWorker" ? { nodeId: "n", capabilities: ["c"], maxConcurrentTasks: 1 } : {}, metadata, (error) =>
              resolve(error ? error.code : 0),
            ),
          );
          expect(codeName(code), `authorization ${JSON.stringify(authorization)}`).toBe("UNAUTHENTICATED");
        }),
        RUN(800),
      );
      counts.authorization = runs;
      expect(codeName((await authClient.outcome("getRegistryStats", {}, "fuzz-admin-token-0123456789")).code)).toBe("OK");
      expect(authServer.registry.getRegistryStats().totalWorkers).toBe(0);
    } finally {
      authClient.close();
      await authServer.close();
    }
  });
});

// ---------------------------------------------------------------- raw bytes

describe("raw bytes that are not valid protobuf, to every method path", () => {
  /**
   * Bytes that cannot decode: a field with wire type 7 (there is none), or a varint that
   * never ends. (A length prefix beyond the end is no good: protobuf-es skips a truncated
   * unknown field without complaint.)
   */
  const undecodable = fc.oneof(
    fc.tuple(fc.integer({ min: 1, max: 15 }), fc.uint8Array({ maxLength: 64 })).map(([field, rest]) => Buffer.concat([Buffer.from([(field << 3) | 7]), Buffer.from(rest)])),
    fc.uint8Array({ minLength: 1, maxLength: 5 }).map((rest) => Buffer.concat([Buffer.from([0x08]), Buffer.from(rest.map((b) => b | 0x80))])),
  );
  const anyBytes = fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b));

  it("every generated 'undecodable' case really is undecodable for every request type", () => {
    fc.assert(
      fc.property(undecodable, (bytes) => {
        for (const method of WorkerRegistryService.methods) expect(() => fromBinary(method.input, bytes)).toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it("any status is allowed, but the server keeps serving and the connection stays usable", { timeout: 120_000 }, async () => {
    const raw = new SecClient(`127.0.0.1:${server.port}`, undefined, { "grpc.use_local_subchannel_pool": 1 });
    try {
      expect(codeName((await raw.outcome("getRegistryStats")).code)).toBe("OK");
      const channel = raw.raw.getChannel();
      expect(grpc.connectivityState[channel.getConnectivityState(false)]).toBe("READY");
      // Any change of the channel's state away from READY would mean the connection was dropped.
      const transitions: string[] = [];
      let tracking = true;
      const track = () => {
        const state = channel.getConnectivityState(false);
        channel.watchConnectivityState(state, Date.now() + 500, (error) => {
          if (!tracking) return;
          if (!error) transitions.push(grpc.connectivityState[channel.getConnectivityState(false)] ?? "?");
          track();
        });
      };
      track();

      const codes: Record<string, Record<string, number>> = {};
      for (const rpc of RPCS) {
        let runs = 0;
        const definition = (await import("./support.js")).DEFINITION[rpc.local]!;
        const streaming = definition.requestStream || definition.responseStream;
        await fc.assert(
          fc.asyncProperty(fc.oneof(undecodable, anyBytes), async (bytes) => {
            runs++;
            const outcome = streaming ? await raw.rawStream(rpc.path, bytes, definition.requestStream) : await raw.rawUnary(rpc.path, bytes);
            const name = codeName(outcome.code);
            (codes[rpc.name] ??= {})[name] = (codes[rpc.name]![name] ?? 0) + 1;
            // The same connection answers the next call.
            const after = await raw.outcome("getRegistryStats");
            expect(codeName(after.code), `after ${rpc.name} got ${Buffer.from(bytes).toString("hex")}`).toBe("OK");
          }),
          RUN(150),
        );
        counts[`raw ${rpc.name}`] = runs;
      }
      tracking = false;
      expect(transitions).toEqual([]);
      expect(grpc.connectivityState[channel.getConnectivityState(false)]).toBe("READY");
      // grpc-js answers undecodable bytes with INTERNAL; make sure the cases did reach the decoder.
      expect(Object.values(codes).every((byCode) => (byCode.INTERNAL ?? 0) > 0)).toBe(true);
    } finally {
      raw.close();
    }
  });
});

// ---------------------------------------------------------------- the store afterwards

describe("the store after the fuzz run", () => {
  it("passes PRAGMA integrity_check, and every stored worker passes the validation of a new registration", async () => {
    const live = server.registry.getRegistryStats().totalWorkers;
    expect(live).toBeGreaterThan(0);
    await server.close();
    closed = true;
    const db = new Database(dbPath, { readonly: true });
    try {
      expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
      expect(db.pragma("foreign_key_check")).toEqual([]);
      const rows = db.prepare("SELECT * FROM workers").all() as Array<Record<string, any>>;
      expect(rows).toHaveLength(live);
      const bad: string[] = [];
      for (const row of rows) {
        const capabilities = JSON.parse(row.capabilities) as unknown;
        try {
          validateWorkerId(row.id);
          if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === "string")) throw new Error("capabilities are not a list of strings");
          validateRegistration({ nodeId: row.node_id, capabilities, maxConcurrentTasks: row.max_concurrent_tasks }, LIMITS);
          if (!(row.current_tasks >= 0 && row.current_tasks <= row.max_concurrent_tasks)) throw new Error(`current_tasks ${row.current_tasks} outside 0..${row.max_concurrent_tasks}`);
          if (!(row.tasks_completed >= 0 && row.tasks_failed >= 0)) throw new Error("negative completion counters");
          if (!(Number.isFinite(row.total_task_duration_ms) && row.total_task_duration_ms >= 0)) throw new Error(`total_task_duration_ms ${row.total_task_duration_ms}`);
          if (!/^[0-9a-f]{64}$/.test(row.token_hash)) throw new Error(`token_hash ${row.token_hash}`);
        } catch (error) {
          bad.push(`${row.id}: ${(error as Error).message}`);
        }
      }
      expect(bad).toEqual([]);
      const reservations = db.prepare("SELECT state, COUNT(*) AS n FROM reservations GROUP BY state").all() as Array<{ state: string; n: number }>;
      for (const r of reservations) expect(["active", "released", "expired"]).toContain(r.state);
    } finally {
      db.close();
    }
  });
});
