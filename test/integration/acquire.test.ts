import { status, type ServiceError } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { ReleaseOutcome } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { waitUntil } from "../support/watch-issue4.js";

interface Grant {
  readonly reservationId: string;
  readonly workerId: string;
  readonly currentTasks: number;
  readonly maxConcurrentTasks: number;
}

/** Acquires until the registry says RESOURCE_EXHAUSTED (or anything else fails); returns the grants and that final error. */
async function acquireUntilExhausted(client: RawRegistryClient, filter: object): Promise<{ grants: Grant[]; final: { code: status; details: string } }> {
  const grants: Grant[] = [];
  for (;;) {
    try {
      const response = await client.call("acquireWorker", { filter });
      const worker = response.worker.worker;
      grants.push({ reservationId: response.reservationId, workerId: worker.id, currentTasks: worker.currentTasks, maxConcurrentTasks: worker.maxConcurrentTasks });
    } catch (error) {
      const { code, details } = error as ServiceError;
      return { grants, final: { code, details } };
    }
  }
}

describe("AcquireWorker / ReleaseWorker over gRPC", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let address: string;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    address = `127.0.0.1:${server.port}`;
    client = new RawRegistryClient(address);
  });
  afterAll(async () => {
    client.close();
    await server.close();
    dirs.cleanup();
  });

  const register = async (nodeId: string, capabilities: string[], maxConcurrentTasks: number) =>
    (await client.call("registerWorker", { nodeId, capabilities, maxConcurrentTasks })).worker;
  const getWorker = async (workerId: string) => (await client.call("getWorker", { workerId })).worker;
  const stats = () => client.call("getRegistryStats");

  it("16 orchestrators on their own connections take exactly the fleet's capacity, never overbooking, then release it all", async () => {
    const capability = "acq-parallel";
    const maxes = Array.from({ length: 40 }, (_, i) => (i % 9) + 1);
    const capacity = maxes.reduce((a, b) => a + b, 0);
    const workers = await Promise.all(maxes.map((max, i) => register(`acq-node-${i}`, [capability], max)));
    const maxById = new Map<string, number>(workers.map((w) => [w.id as string, w.maxConcurrentTasks as number]));
    const before = await stats();

    const orchestrators = Array.from({ length: 16 }, (_, i) => new RawRegistryClient(address, { "grpc.channel_id": 1000 + i }));
    try {
      const results = await Promise.all(orchestrators.map((orchestrator) => acquireUntilExhausted(orchestrator, { capabilities: [capability] })));
      const grants = results.flatMap((r) => r.grants);

      // Every orchestrator stopped only because nothing had a free slot.
      for (const { final } of results) {
        expect(final.code).toBe(status.RESOURCE_EXHAUSTED);
        expect(final.details).toMatch(new RegExp(`^40 workers match capabilities \\[${capability}\\].*, but none has 1 free slot$`));
      }
      expect(grants).toHaveLength(capacity);
      expect(new Set(grants.map((g) => g.reservationId)).size).toBe(capacity);
      for (const grant of grants) {
        expect(grant.reservationId).toMatch(/^rsv-\d+-[a-z0-9]{20}$/);
        expect(maxById.has(grant.workerId)).toBe(true);
        expect(grant.currentTasks).toBeGreaterThanOrEqual(1);
        expect(grant.currentTasks).toBeLessThanOrEqual(grant.maxConcurrentTasks);
      }
      const perWorker = new Map<string, number>();
      for (const grant of grants) perWorker.set(grant.workerId, (perWorker.get(grant.workerId) ?? 0) + 1);
      for (const worker of workers) expect(perWorker.get(worker.id), worker.id).toBe(worker.maxConcurrentTasks);
      const full = await Promise.all(workers.map((w) => getWorker(w.id)));
      for (const worker of full) {
        expect(worker.currentTasks).toBe(worker.maxConcurrentTasks);
        expect(worker.availableCapacity).toBe(0);
      }
      const held = await stats();
      expect(Number(held.usedCapacity) - Number(before.usedCapacity)).toBe(capacity);
      expect(Number(held.activeReservations) - Number(before.activeReservations)).toBe(capacity);

      // Release every reservation at once, spread over the orchestrators.
      const releases = await Promise.all(
        grants.map((grant, i) => orchestrators[i % orchestrators.length]!.call("releaseWorker", { reservationId: grant.reservationId, success: true, durationMs: 10 })),
      );
      for (const release of releases) expect(release.outcome).toBe(ReleaseOutcome.RELEASED);
      const empty = await Promise.all(workers.map((w) => getWorker(w.id)));
      for (const worker of empty) {
        expect(worker.currentTasks).toBe(0);
        expect(worker.metrics.tasksCompleted).toBe(BigInt(worker.maxConcurrentTasks));
      }
      const released = await stats();
      expect(released.usedCapacity).toBe(before.usedCapacity);
      expect(released.activeReservations).toBe(before.activeReservations);

      // A repeat changes nothing: no slot, no completion, no event.
      const repeat = grants[0]!;
      const workerBefore = await getWorker(repeat.workerId);
      const again = await client.call("releaseWorker", { reservationId: repeat.reservationId, success: false, durationMs: 99 });
      expect(again.outcome).toBe(ReleaseOutcome.ALREADY_RELEASED);
      expect(again.worker).toMatchObject({ id: repeat.workerId, currentTasks: 0, metrics: workerBefore.metrics });
      expect(await getWorker(repeat.workerId)).toMatchObject({ currentTasks: 0, metrics: workerBefore.metrics });
      const afterRepeat = await stats();
      expect(afterRepeat.revision).toBe(released.revision);
      expect(afterRepeat.tasksFailed).toBe(released.tasksFailed);
    } finally {
      orchestrators.forEach((o) => o.close());
    }
  });

  it("ReleaseWorker: an unknown well-formed id is NOT_FOUND, a malformed one INVALID_ARGUMENT", async () => {
    const unknown = await client.fail("releaseWorker", { reservationId: "rsv-1700000000000-abcdefghij0123456789", success: true, durationMs: 1 });
    expect(unknown.code).toBe(status.NOT_FOUND);
    expect(unknown.details).toMatch(/^reservation rsv-1700000000000-abcdefghij0123456789 not found/);
    for (const reservationId of ["", "nope", "worker-1-abc", "rsv-x-abc", "rsv-1-ABC"]) {
      const malformed = await client.fail("releaseWorker", { reservationId, success: true, durationMs: 1 });
      expect(malformed.code, JSON.stringify(reservationId)).toBe(status.INVALID_ARGUMENT);
      expect(malformed.details).toMatch(/^reservation_id /);
    }
  });

  it("a filter that matches nothing gives RESOURCE_EXHAUSTED saying no worker matches", async () => {
    await register("acq-other", ["acq-something"], 3);
    const none = await client.fail("acquireWorker", { filter: { capabilities: ["acq-no-such-capability"] } });
    expect(none.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(none.details).toMatch(/^no worker matches capabilities \[acq-no-such-capability\]/);
  });

  it("spreads one orchestrator's acquisitions at random over near-equal workers", async () => {
    const capability = "acq-ties";
    const workers = await Promise.all([0, 1, 2, 3].map((i) => register(`acq-tie-${i}`, [capability], 100)));
    const picks: string[] = [];
    for (let i = 0; i < 40; i++) picks.push((await client.call("acquireWorker", { filter: { capabilities: [capability] } })).worker.worker.id);
    const counts = workers.map((w) => picks.filter((id) => id === w.id).length);
    for (const count of counts) expect(count).toBeGreaterThanOrEqual(4);
    // A deterministic choice would cycle through the equal workers in id order; a random one does not.
    const sorted = workers.map((w) => w.id as string).sort();
    const roundRobin = picks.map((_, i) => sorted[i % sorted.length]);
    expect(picks).not.toEqual(roundRobin);
    expect(new Set(picks.slice(0, 8)).size).toBeGreaterThan(1);
  });

  it("unregistering a worker drops its reservations: releasing one is then NOT_FOUND", async () => {
    const worker = await register("acq-gone", ["acq-gone"], 2);
    const held = await client.call("acquireWorker", { filter: { capabilities: ["acq-gone"] } });
    expect(held.worker.worker.id).toBe(worker.id);
    const before = await stats();
    await client.call("unregisterWorker", { workerId: worker.id });
    expect(Number((await stats()).activeReservations)).toBe(Number(before.activeReservations) - 1);
    const release = await client.fail("releaseWorker", { reservationId: held.reservationId, success: true, durationMs: 1 });
    expect(release.code).toBe(status.NOT_FOUND);
  });
});

describe("reservation expiry", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      registry: { reservationTtlMs: 300 },
    });
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
  });
  afterAll(async () => {
    client.close();
    await server.close();
    dirs.cleanup();
  });

  it("frees an unreleased slot after reservationTtlMs; the late release answers EXPIRED and records the outcome", async () => {
    const worker = (await client.call("registerWorker", { nodeId: "ttl-node", capabilities: ["acq-ttl"], maxConcurrentTasks: 1 })).worker;
    const filter = { capabilities: ["acq-ttl"] };
    const first = await client.call("acquireWorker", { filter });
    const expiresAtMs = Number(first.expiresAt.seconds) * 1000 + first.expiresAt.nanos / 1e6;
    expect(Math.abs(expiresAtMs - (Date.now() + 300))).toBeLessThan(1000);
    expect(first.worker.worker.currentTasks).toBe(1);
    expect((await client.fail("acquireWorker", { filter })).details).toMatch(/but none has 1 free slot$/);

    const started = performance.now();
    await waitUntil("the expired slot to be freed", async () => (await client.call("getWorker", { workerId: worker.id })).worker.currentTasks === 0, 3000);
    // The expiry runs on the one-second tick: within TTL + a tick, with some slack.
    expect(performance.now() - started).toBeLessThan(2000);
    expect(Number((await client.call("getRegistryStats")).activeReservations)).toBe(0);

    // The slot is free again for someone else.
    const second = await client.call("acquireWorker", { filter });
    expect(second.worker.worker.currentTasks).toBe(1);
    const late = await client.call("releaseWorker", { reservationId: first.reservationId, success: true, durationMs: 5 });
    expect(late.outcome).toBe(ReleaseOutcome.EXPIRED);
    // The late release records the completion but does not free the slot the second reservation holds.
    expect(late.worker).toMatchObject({ currentTasks: 1, metrics: { tasksCompleted: 1n } });
    expect((await client.call("releaseWorker", { reservationId: first.reservationId, success: true, durationMs: 5 })).outcome).toBe(
      ReleaseOutcome.ALREADY_RELEASED,
    );
    expect((await client.call("releaseWorker", { reservationId: second.reservationId, success: true, durationMs: 5 })).outcome).toBe(ReleaseOutcome.RELEASED);
    expect((await client.call("getWorker", { workerId: worker.id })).worker).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 2n } });
  });
});
