import { afterEach, describe, expect, it } from "vitest";
import { ChangeFeed } from "../../src/domain/change-feed.js";
import { InvalidArgumentError, LimitExceededError, WorkerNotFoundError } from "../../src/domain/errors.js";
import { EvictionGuard } from "../../src/domain/eviction-guard.js";
import { Fleet } from "../../src/domain/fleet.js";
import { silentLogger, type Logger } from "../../src/domain/logger.js";
import { compileRegistryOptions, type RegistryOptions } from "../../src/domain/registry-options.js";
import { DuplicateWorkerIdError } from "../../src/domain/registry-store.js";
import { Registrations } from "../../src/domain/registration.js";
import { sha256Hex } from "../../src/domain/worker-token.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { sequentialIds } from "../support/registry-fixture.js";
import { workerRecord } from "../support/worker-records.js";

const SECRET = Buffer.alloc(32, 7).toString("base64url");
const stores: SqliteStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function setup(given: RegistryOptions = {}, newWorkerId?: (clock: FakeClock) => () => string) {
  const clock = new FakeClock();
  const options = compileRegistryOptions(given);
  const store = openSqliteStore({ path: ":memory:" });
  stores.push(store);
  const infos: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const log: Logger = { ...silentLogger, info: (fields, message) => infos.push({ fields: fields as Record<string, unknown>, message }) };
  const fleet = new Fleet(options, true);
  const feed = new ChangeFeed(store, (event) => void fleet.apply(event, clock.monotonic(), clock.now()), () => Promise.resolve(0), log, () => clock.now(), 0);
  const guard = new EvictionGuard(clock, log, { intakeWindowMs: 60_000, collapseRatio: 0.5, collapseMinWorkers: 3, historyWindows: 4, stallThresholdMs: 3_000, maxEvictionShare: 0.1, maxPauseMs: 60_000 });
  const registrations = new Registrations({ store, fleet, feed, guard, clock, log, options, newWorkerId: (newWorkerId ?? sequentialIds)(clock), newWorkerSecret: () => SECRET });
  const input = (nodeId: string, extra: Partial<{ capabilities: string[]; maxConcurrentTasks: number; labels: Record<string, string>; version: string }> = {}) => ({ nodeId, capabilities: ["coder"], maxConcurrentTasks: 4, ...extra });
  return { clock, store, fleet, registrations, infos, input };
}

describe("Registrations.register", () => {
  it("commits a new healthy worker, answers with its view and a token only it gets, and keeps the token's hash", async () => {
    const { clock, store, fleet, registrations, input } = setup();
    const registered = await registrations.register(input("n1", { labels: { zone: "a" }, version: "1.2.0" }), "role-hash");
    expect(registered).toMatchObject({
      id: `worker-${clock.now()}-t00000000`,
      nodeId: "n1",
      capabilities: ["coder"],
      currentTasks: 0,
      availableCapacity: 4,
      healthStatus: "healthy",
      registeredAtMs: clock.now(),
      lastHeartbeatAtMs: clock.now(),
      labels: { zone: "a" },
      version: "1.2.0",
      state: "active",
      token: `${registered.id}.${SECRET}`,
    });
    const [stored] = (await store.load()).workers;
    expect(stored).toMatchObject({ id: registered.id, tokenHash: sha256Hex(SECRET), registeredBy: "role-hash", health: "healthy" });
    expect(fleet.get(registered.id)).toBeDefined();
  });

  it("counts a registration as a sign of life for the eviction guard", async () => {
    const { fleet, registrations, input } = setup();
    const { id } = await registrations.register(input("n1"), null);
    expect(fleet.get(id)!.intakeWindow).not.toBe(-1);
  });

  it("replaces the node's previous worker, which leaves with the reason 'replaced'", async () => {
    const { fleet, registrations, input, infos } = setup();
    const first = await registrations.register(input("n1"), null);
    const second = await registrations.register(input("n1", { maxConcurrentTasks: 8 }), null);
    expect(fleet.ofNode("n1").map((w) => w.id)).toEqual([second.id]);
    expect(fleet.removalOf(first.id)).toBe("replaced");
    expect(fleet.totals()).toMatchObject({ workers: 1, capacity: 8 });
    expect(infos).toContainEqual({ fields: { workerId: first.id, nodeId: "n1", replacedBy: second.id }, message: "worker replaced by a new registration of its node" });
  });

  it("runs concurrent registrations of one node one after another: the last one stays, each is answered", async () => {
    const { fleet, registrations, input } = setup();
    const answers = await Promise.all([1, 2, 3].map((max) => registrations.register(input("n1", { maxConcurrentTasks: max }), null)));
    expect(answers.map((a) => a.maxConcurrentTasks)).toEqual([1, 2, 3]);
    expect(new Set(answers.map((a) => a.id)).size).toBe(3);
    expect(fleet.ofNode("n1").map((w) => w.id)).toEqual([answers[2]!.id]);
    expect(fleet.size).toBe(1);
  });

  it("refuses a registration beyond the worker limit, counting those still being committed", async () => {
    const { fleet, registrations, input } = setup({ limits: { maxWorkers: 2 } });
    const results = await Promise.allSettled(["n1", "n2", "n3"].map((node) => registrations.register(input(node), null)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
    expect((results[2] as PromiseRejectedResult).reason).toEqual(new LimitExceededError("the registry holds its limit of 2 workers; unregister some or raise --max-workers"));
    expect(fleet.size).toBe(2);
    await expect(registrations.register(input("n4"), null)).rejects.toThrow(LimitExceededError);
  });

  it("at the worker limit, a node that registers again replaces its worker instead of being refused", async () => {
    const { fleet, registrations, input } = setup({ limits: { maxWorkers: 2 } });
    await registrations.register(input("n1"), null);
    await registrations.register(input("n2"), null);
    // A restarted worker process registers afresh: the fleet does not grow, so the limit does not apply.
    const again = await registrations.register(input("n2", { maxConcurrentTasks: 8 }), null);
    expect(fleet.ofNode("n2").map((w) => w.id)).toEqual([again.id]);
    expect(fleet.size).toBe(2);
    // Several at once for one node, at the limit: each replaces the one before it.
    const answers = await Promise.all([1, 2, 3].map((max) => registrations.register(input("n1", { maxConcurrentTasks: max }), null)));
    expect(fleet.ofNode("n1").map((w) => w.id)).toEqual([answers[2]!.id]);
    expect(fleet.size).toBe(2);
    // A new node is still refused.
    await expect(registrations.register(input("n3"), null)).rejects.toThrow(LimitExceededError);
  });

  it("validates the input, naming the field, and commits nothing", async () => {
    const { store, registrations, input } = setup();
    await expect(registrations.register(input("n1", { maxConcurrentTasks: 0 }), null)).rejects.toThrow(InvalidArgumentError);
    await expect(registrations.register(input("n1", { maxConcurrentTasks: 0 }), null)).rejects.toThrow(/^max_concurrent_tasks must be between 1 and 10000, got 0$/);
    expect(await store.headRevision()).toBe(0);
  });

  it("draws a fresh id when the one drawn is taken, up to three tries", async () => {
    const taken = "worker-1-taken";
    const draws = ["worker-1-taken", "worker-1-taken", "worker-1-fresh", "worker-1-taken", "worker-1-taken", "worker-1-taken"];
    const { store, clock, registrations, input } = setup({}, () => () => draws.shift()!);
    await store.registerWorker(workerRecord({ id: taken, nodeId: "elsewhere" }), clock.now());
    expect((await registrations.register(input("n1"), null)).id).toBe("worker-1-fresh");
    await expect(registrations.register(input("n2"), null)).rejects.toThrow(DuplicateWorkerIdError);
    expect(draws).toEqual([]);
  });
});

describe("Registrations.unregister", () => {
  it("removes the worker at once, with the reason 'unregistered'", async () => {
    const { store, fleet, registrations, input } = setup();
    const { id } = await registrations.register(input("n1"), null);
    await registrations.unregister(id);
    expect(fleet.get(id)).toBeUndefined();
    expect(fleet.removalOf(id)).toBe("unregistered");
    expect((await store.load()).workers).toEqual([]);
  });

  it("an unknown worker is not found, and nothing is written", async () => {
    const { store, registrations } = setup();
    await expect(registrations.unregister("worker-1-nobody")).rejects.toThrow(new WorkerNotFoundError("worker-1-nobody"));
    expect(await store.headRevision()).toBe(0);
  });

  it("unregistering twice: the second call says why the worker left", async () => {
    const { registrations, input } = setup();
    const { id } = await registrations.register(input("n1"), null);
    await registrations.unregister(id);
    await expect(registrations.unregister(id)).rejects.toThrow(new WorkerNotFoundError(id, "unregistered"));
  });
});
