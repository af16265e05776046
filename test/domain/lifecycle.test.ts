import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, NoWorkerAvailableError, WorkerDrainingError, WorkerNotFoundError } from "../../src/domain/errors.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coders = { ...NO_FILTER, capabilities: ["coder"] };
const coder = (nodeId: string, extra: object = {}) => ({ nodeId, capabilities: ["coder"], maxConcurrentTasks: 2, ...extra });

function collector(): { events: WorkerEvent[]; listener: (event: WorkerEvent) => void } {
  const events: WorkerEvent[] = [];
  return { events, listener: (event) => events.push(event) };
}
const summary = (events: WorkerEvent[]) =>
  events.map((e) => [e.type, e.worker.id, e.worker.state, e.previousState ?? e.reason ?? ""].filter((part) => part !== "").join(" "));

describe("cordon and uncordon", () => {
  it("a cordoned worker keeps heartbeating and its health but is never ranked nor granted; uncordon puts it back", async () => {
    const { registry, clock } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    const b = await registry.registerWorker(coder("b"));
    const cordoned = await registry.cordonWorker(a.id);
    expect(cordoned).toMatchObject({ id: a.id, state: "cordoned", drainDeadlineMs: null, healthStatus: "healthy" });
    expect(registry.getWorkersForLoadBalancing(coders).map((r) => r.worker.id)).toEqual([b.id]);
    const grants = [await registry.acquireWorker(coders), await registry.acquireWorker(coders)];
    expect(grants.map((g) => g.ranked.worker.id)).toEqual([b.id, b.id]);
    await expect(registry.acquireWorker(coders)).rejects.toThrow(NoWorkerAvailableError);
    // Still listed, still heartbeating, still healthy.
    expect(registry.discoverWorkers(coders).workers.map((w) => `${w.id} ${w.state}`)).toEqual([`${a.id} cordoned`, `${b.id} active`]);
    clock.advance(MINUTE);
    expect(registry.heartbeat(a.id)).toMatchObject({ healthStatus: "healthy", state: "cordoned" });
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 2, cordonedWorkers: 1, drainingWorkers: 0, healthyWorkers: 2 });
    const back = await registry.uncordonWorker(a.id);
    expect(back.state).toBe("active");
    expect((await registry.acquireWorker(coders)).ranked.worker.id).toBe(a.id);
  });

  it("running tasks of a cordoned worker finish normally", async () => {
    const { registry } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    await registry.updateTaskCount(a.id, 1);
    const grant = await registry.acquireWorker(coders);
    await registry.cordonWorker(a.id);
    expect((await registry.releaseWorker(grant.reservationId, true, 10)).worker).toMatchObject({ currentTasks: 1, state: "cordoned" });
    expect(await registry.updateTaskCount(a.id, -1)).toMatchObject({ currentTasks: 0, state: "cordoned" });
    expect(await registry.recordTaskCompletion(a.id, true, 5)).toMatchObject({ state: "cordoned" });
  });

  it("cordoning twice, or uncordoning an active worker, changes nothing and writes no event", async () => {
    const { registry } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    await registry.uncordonWorker(a.id);
    await registry.cordonWorker(a.id);
    await registry.cordonWorker(a.id);
    await registry.uncordonWorker(a.id);
    expect(summary(events)).toEqual([`state_changed ${a.id} cordoned active`, `state_changed ${a.id} active cordoned`]);
  });

  it("refuses unknown and malformed ids", async () => {
    const { registry } = await createTestRegistry();
    await expect(registry.cordonWorker("worker-1-nosuch")).rejects.toThrow(WorkerNotFoundError);
    await expect(registry.drainWorker("worker-1-nosuch")).rejects.toThrow(WorkerNotFoundError);
    await expect(registry.cordonWorker("nope")).rejects.toThrow(InvalidArgumentError);
  });
});

describe("drain", () => {
  it("an idle worker is removed at once: state_changed, then unregistered with reason drained", async () => {
    const { registry, clock } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    const drained = await registry.drainWorker(a.id, 5 * MINUTE);
    expect(drained).toMatchObject({ id: a.id, state: "draining", drainDeadlineMs: clock.now() + 5 * MINUTE });
    expect(summary(events)).toEqual([`state_changed ${a.id} draining active`, `unregistered ${a.id} draining drained`]);
    expect(() => registry.getWorker(a.id)).toThrow(WorkerNotFoundError);
  });

  it("a busy worker leaves rotation, its heartbeats say so, and it is removed when its tasks and reservations reach zero", async () => {
    const { registry, clock } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    const b = await registry.registerWorker(coder("b"));
    await registry.updateTaskCount(a.id, 1);
    const grant = await registry.acquireWorker({ ...coders, minAvailableCapacity: 1 });
    expect(grant.ranked.worker.id).toBe(b.id);
    const held = await registry.acquireWorker(coders);
    expect(held.ranked.worker.id).toBe(a.id);
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    const drained = await registry.drainWorker(a.id);
    // The default grace: 10 minutes.
    expect(drained).toMatchObject({ state: "draining", currentTasks: 2, drainDeadlineMs: clock.now() + 10 * MINUTE });
    expect(registry.heartbeatAck(a.id).drainDeadlineMs).toBe(clock.now() + 10 * MINUTE);
    expect(registry.heartbeatAck(b.id).drainDeadlineMs).toBeNull();
    expect(registry.getWorkersForLoadBalancing(coders).map((r) => r.worker.id)).toEqual([b.id]);
    await registry.releaseWorker(grant.reservationId, true, 1);
    await expect(registry.acquireWorker(coders)).resolves.toMatchObject({ ranked: { worker: { id: b.id } } });
    expect(await registry.updateTaskCount(a.id, -1)).toMatchObject({ state: "draining", currentTasks: 1 });
    // The last slot is a reservation: its release removes the worker, in the same transaction.
    const released = await registry.releaseWorker(held.reservationId, true, 7);
    expect(released).toMatchObject({ outcome: "released", worker: { id: a.id, currentTasks: 0, state: "draining" } });
    expect(summary(events).filter((line) => line.includes(a.id))).toEqual([
      `state_changed ${a.id} draining active`,
      `updated ${a.id} draining`,
      `updated ${a.id} draining`,
      `unregistered ${a.id} draining drained`,
    ]);
    expect(() => registry.getWorker(a.id)).toThrow(WorkerNotFoundError);
  });

  it("the last UpdateTaskCount(-1) of a draining worker removes it and answers the worker as it left", async () => {
    const { registry } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    await registry.updateTaskCount(a.id, 2);
    await registry.drainWorker(a.id);
    await registry.recordTaskCompletion(a.id, true, 3);
    expect(await registry.updateTaskCount(a.id, -2)).toMatchObject({ id: a.id, currentTasks: 0, state: "draining" });
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 0, drainingWorkers: 0 });
  });

  it("a worker still busy at its deadline is removed anyway (reason drain_deadline); its reservations go with it", async () => {
    const { registry, clock } = await createTestRegistry({ reservationTtlMs: 60 * MINUTE });
    const a = await registry.registerWorker(coder("a"));
    const grant = await registry.acquireWorker(coders);
    await registry.updateTaskCount(a.id, 1);
    await registry.drainWorker(a.id, 2 * MINUTE);
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    clock.advance(2 * MINUTE - 1);
    registry.heartbeat(a.id);
    await registry.tick();
    expect(registry.getWorker(a.id).state).toBe("draining");
    clock.advance(1);
    await registry.tick();
    expect(summary(events)).toEqual([`unregistered ${a.id} draining drain_deadline`]);
    expect(events[0]!.worker.currentTasks).toBe(2);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 0, activeReservations: 0 });
    await expect(registry.releaseWorker(grant.reservationId, true, 1)).rejects.toThrow(/not found/);
  });

  it("cannot be undone by uncordon or cordon; draining again keeps the earlier deadline", async () => {
    const { registry, clock } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    await registry.updateTaskCount(a.id, 1);
    await registry.cordonWorker(a.id);
    const first = await registry.drainWorker(a.id, 5 * MINUTE);
    await expect(registry.uncordonWorker(a.id)).rejects.toThrow(
      new WorkerDrainingError(a.id, "uncordoned"),
    );
    await expect(registry.cordonWorker(a.id)).rejects.toThrow(WorkerDrainingError);
    expect((await registry.drainWorker(a.id, 9 * MINUTE)).drainDeadlineMs).toBe(first.drainDeadlineMs);
    clock.advance(MINUTE);
    expect((await registry.drainWorker(a.id, MINUTE)).drainDeadlineMs).toBe(clock.now() + MINUTE);
  });

  it("a new registration of the node replaces the draining worker with an active one", async () => {
    const { registry } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a", { labels: { zone: "eu-1" }, version: "v1" }));
    await registry.updateTaskCount(a.id, 1);
    await registry.drainWorker(a.id);
    const again = await registry.registerWorker(coder("a", { labels: { zone: "eu-1" }, version: "v2" }));
    expect(again).toMatchObject({ state: "active", drainDeadlineMs: null, version: "v2", labels: { zone: "eu-1" } });
    expect(() => registry.getWorker(a.id)).toThrow(WorkerNotFoundError);
  });

  it("refuses a grace outside 1 s to 7 days, naming the field", async () => {
    const { registry } = await createTestRegistry();
    const a = await registry.registerWorker(coder("a"));
    await expect(registry.drainWorker(a.id, 999)).rejects.toThrow("grace must be between 1s and 168h (7 days), got 999 ms");
    await expect(registry.drainWorker(a.id, 7 * 24 * 60 * MINUTE + 1)).rejects.toThrow(InvalidArgumentError);
    expect(registry.getWorker(a.id).state).toBe("active");
  });

  it("state and deadline survive a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lifecycle-"));
    try {
      const clock = new FakeClock();
      const path = join(dir, "registry.db");
      const first = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      const a = await first.registry.registerWorker(coder("a", { labels: { zone: "eu-1", "example.com/gpu": "" }, version: "v1" }));
      const b = await first.registry.registerWorker(coder("b"));
      await first.registry.updateTaskCount(a.id, 1);
      await first.registry.drainWorker(a.id, 3 * MINUTE);
      await first.registry.cordonWorker(b.id);
      await first.registry.close();
      await first.store.close();
      const second = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      expect(second.registry.getWorker(a.id)).toMatchObject({ state: "draining", drainDeadlineMs: clock.now() + 3 * MINUTE, version: "v1", labels: { zone: "eu-1", "example.com/gpu": "" } });
      expect(second.registry.getWorker(b.id).state).toBe("cordoned");
      expect(second.registry.getWorkersForLoadBalancing(coders)).toEqual([]);
      await second.registry.close();
      await second.store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("labels and versions", () => {
  it("are kept, shown, and select workers in discovery, load balancing, acquisition and watches", async () => {
    const { registry } = await createTestRegistry();
    const eu1 = await registry.registerWorker(coder("eu1", { labels: { zone: "eu-1", gpu: "a100" }, version: "v1" }));
    const eu2 = await registry.registerWorker(coder("eu2", { labels: { zone: "eu-1", gpu: "t4", preemptible: "true" }, version: "v2" }));
    const us = await registry.registerWorker(coder("us", { labels: { zone: "us-2" }, version: "v2" }));
    expect(eu1).toMatchObject({ labels: { zone: "eu-1", gpu: "a100" }, version: "v1" });
    const ids = (workers: ReadonlyArray<{ readonly id: string }>) => workers.map((w) => w.id);
    expect(ids(registry.discoverWorkers({ ...coders, labelSelector: "zone=eu-1" }).workers)).toEqual([eu1.id, eu2.id]);
    expect(ids(registry.discoverWorkers({ ...coders, labelSelector: "zone=eu-1,!preemptible" }).workers)).toEqual([eu1.id]);
    expect(ids(registry.discoverWorkers({ ...coders, versions: ["v2"] }).workers)).toEqual([eu2.id, us.id]);
    expect(ids(registry.discoverWorkers({ ...coders, versions: ["v1", "v2"], labelSelector: "gpu notin (t4)" }).workers)).toEqual([eu1.id, us.id]);
    expect(registry.getWorkersForLoadBalancing({ ...coders, labelSelector: "gpu in (a100,h100)" }).map((r) => r.worker.id)).toEqual([eu1.id]);
    expect((await registry.acquireWorker({ ...coders, versions: ["v1"] })).ranked.worker.id).toBe(eu1.id);
    await expect(registry.acquireWorker({ ...coders, labelSelector: "zone=ap-1" })).rejects.toThrow(
      'no worker matches capabilities [coder] and health healthy or degraded and labels "zone=ap-1"',
    );
    const { events, listener } = collector();
    await registry.watch({ ...NO_FILTER, labelSelector: "zone=us-2", versions: ["v2"] }, 0, listener);
    await registry.updateTaskCount(eu2.id, 1);
    await registry.updateTaskCount(us.id, 1);
    expect(summary(events)).toEqual([`updated ${us.id} active`]);
  });

  it("a bad selector or version list is INVALID_ARGUMENT naming the field, everywhere a filter is taken", async () => {
    const { registry } = await createTestRegistry();
    const bad = { ...coders, labelSelector: "zone in (a" };
    const message = /^filter\.label_selector has a syntax error at position 11/;
    expect(() => registry.discoverWorkers(bad)).toThrow(message);
    expect(() => registry.getWorkersForLoadBalancing(bad)).toThrow(message);
    await expect(registry.acquireWorker(bad)).rejects.toThrow(message);
    await expect(registry.watch(bad, 0, () => {})).rejects.toThrow(message);
    expect(() => registry.discoverWorkers({ ...coders, versions: ["v1", "v1"] })).toThrow('filter.versions[1] repeats "v1"');
  });

  it("bad labels or version refuse the registration and store nothing", async () => {
    const { registry } = await createTestRegistry();
    await expect(registry.registerWorker(coder("a", { labels: { "bad key": "x" } }))).rejects.toThrow(/^labels\["bad key"\] key has name "bad key"/);
    await expect(registry.registerWorker(coder("a", { version: "1\n2" }))).rejects.toThrow(/^version must not contain/);
    expect(registry.getRegistryStats().totalWorkers).toBe(0);
    expect(registry.getRegistryStats().revision).toBe(0);
  });
});

describe("lifecycle metrics", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it("stats count workers by state, kept exact through every change", async () => {
    const { registry } = await createTestRegistry();
    const workers = [];
    for (const node of ["a", "b", "c", "d"]) workers.push(await registry.registerWorker(coder(node)));
    for (const w of workers) await registry.updateTaskCount(w.id, 1);
    await registry.cordonWorker(workers[0]!.id);
    await registry.cordonWorker(workers[1]!.id);
    await registry.drainWorker(workers[1]!.id);
    await registry.drainWorker(workers[2]!.id);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 4, cordonedWorkers: 1, drainingWorkers: 2 });
    await registry.updateTaskCount(workers[1]!.id, -1);
    await registry.uncordonWorker(workers[0]!.id);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 3, cordonedWorkers: 0, drainingWorkers: 1 });
  });
});
