import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReplicaSet } from "./replica-set.js";

const sharedUrl = inject("postgresUrl");

interface WatchedEvent {
  readonly revision: number;
  readonly type: number;
  readonly workerId: string;
  readonly currentTasks: number;
}

/** A WatchWorkers stream on one replica, collecting what it receives. */
function watch(set: ReplicaSet, replica: number, startRevision: number) {
  const events: WatchedEvent[] = [];
  const open = (set.client(replica).grpc as unknown as { watchWorkers(request: object): NodeJS.EventEmitter & { cancel(): void } }).watchWorkers;
  const call = open.call(set.client(replica).grpc, { startRevision: BigInt(startRevision) });
  const ended = new Promise<number>((resolve) => {
    call.on("error", (error: { code: number }) => resolve(error.code));
    call.on("end", () => resolve(status.OK));
  });
  call.on("data", (message: { event: { revision: bigint; type: number; worker: { id: string; currentTasks: number } } }) =>
    events.push({ revision: Number(message.event.revision), type: message.event.type, workerId: message.event.worker.id, currentTasks: message.event.worker.currentTasks }),
  );
  return { events, cancel: () => call.cancel(), ended };
}

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.skipIf(sharedUrl === "")("three replicas on one PostgreSQL: atomic acquisition and one watch history", () => {
  let set: ReplicaSet;
  beforeAll(async () => {
    set = await ReplicaSet.start(3, { sharedUrl });
  }, 60_000);
  afterAll(async () => {
    await set?.dispose();
  });

  it("orchestrators calling AcquireWorker on different replicas at once never overbook a worker", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) ids.push((await set.client(i % 3).call("registerWorker", { nodeId: `acq-${i}`, capabilities: ["acq"], maxConcurrentTasks: 3 })).worker.id);
    const started = performance.now();
    // Eight orchestrators, spread over the three replicas, each acquiring until nothing is left.
    const granted = await Promise.all(
      Array.from({ length: 8 }, async (_, orchestrator) => {
        const client = set.client(orchestrator % 3);
        const mine: Array<{ workerId: string; reservationId: string }> = [];
        for (;;) {
          try {
            const answer = await client.call("acquireWorker", { filter: { capabilities: ["acq"] } });
            mine.push({ workerId: answer.worker.worker.id, reservationId: answer.reservationId });
          } catch (error) {
            expect((error as { code: number }).code).toBe(status.RESOURCE_EXHAUSTED);
            return mine;
          }
        }
      }),
    );
    const elapsedMs = performance.now() - started;
    const all = granted.flat();
    console.log(`acquisition across 3 replicas: ${all.length} slots granted to 8 orchestrators in ${elapsedMs.toFixed(0)} ms (${((all.length / elapsedMs) * 1000).toFixed(0)} grants/s, contended to exhaustion)`);
    expect(all).toHaveLength(27);
    const perWorker = new Map<string, number>();
    for (const { workerId } of all) perWorker.set(workerId, (perWorker.get(workerId) ?? 0) + 1);
    expect([...perWorker.values()].every((n) => n === 3)).toBe(true);
    for (const replica of [0, 1, 2]) {
      const { workers } = await set.client(replica).call("discoverWorkers", { filter: { capabilities: ["acq"] } });
      expect(workers.map((w: { currentTasks: number }) => w.currentTasks)).toEqual(ids.map(() => 3));
    }
    // Released on any replica, whichever granted it.
    await Promise.all(all.map(({ reservationId }, i) => set.client((i + 1) % 3).call("releaseWorker", { reservationId, success: true, durationMs: 10 })));
    const stats = await set.client(2).call("getRegistryStats");
    expect(Number(stats.activeReservations)).toBe(0);
  });

  it("UpdateTaskCount keeps its bounds when replicas race on one worker", async () => {
    const { worker } = await set.client(0).call("registerWorker", { nodeId: "bounded", capabilities: ["bounded"], maxConcurrentTasks: 5 });
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, i) => set.client(i % 3).call("updateTaskCount", { workerId: worker.id, delta: 1 }).then(() => "ok", (e: { code: number }) => status[e.code])),
    );
    expect(outcomes.filter((o) => o === "ok")).toHaveLength(5);
    expect(outcomes.filter((o) => o !== "ok").every((o) => o === "FAILED_PRECONDITION")).toBe(true);
    const downs = await Promise.all(
      Array.from({ length: 30 }, (_, i) => set.client(i % 3).call("updateTaskCount", { workerId: worker.id, delta: -1 }).then(() => "ok", (e: { code: number }) => status[e.code])),
    );
    expect(downs.filter((o) => o === "ok")).toHaveLength(5);
    for (const replica of [0, 1, 2]) expect((await set.client(replica).call("getWorker", { workerId: worker.id })).worker.currentTasks).toBe(0);
  });

  it("a worker cordoned through one replica is never granted through the others, even before they apply the cordon", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await set.client(i % 3).call("registerWorker", { nodeId: `cordon-${i}`, capabilities: ["cordon"], maxConcurrentTasks: 3 })).worker.id);
    // Committed through replica 0; replicas 1 and 2 are asked at once, before the event need have reached them.
    await set.client(0).call("cordonWorker", { workerId: ids[0] });
    const granted = await Promise.all(
      Array.from({ length: 8 }, async (_, orchestrator) => {
        const client = set.client(1 + (orchestrator % 2));
        const mine: string[] = [];
        for (;;) {
          try {
            mine.push((await client.call("acquireWorker", { filter: { capabilities: ["cordon"] } })).worker.worker.id);
          } catch (error) {
            expect((error as { code: number }).code).toBe(status.RESOURCE_EXHAUSTED);
            return mine;
          }
        }
      }),
    );
    expect(granted.flat().filter((id) => id === ids[0])).toEqual([]);
    expect(granted.flat()).toHaveLength(3 * 3);
    for (const replica of [0, 1, 2]) expect((await set.client(replica).call("getWorker", { workerId: ids[0] })).worker.currentTasks).toBe(0);
  });

  it("a drain asked through one replica ends with the last task reported through another, on every replica", async () => {
    const { worker } = await set.client(0).call("registerWorker", { nodeId: "drained", capabilities: ["drained"], maxConcurrentTasks: 2 });
    await set.client(1).call("updateTaskCount", { workerId: worker.id, delta: 2 });
    await set.client(2).call("drainWorker", { workerId: worker.id });
    await set.client(0).call("updateTaskCount", { workerId: worker.id, delta: -1 });
    await set.client(1).call("updateTaskCount", { workerId: worker.id, delta: -1 });
    // Removed in the transaction of the last -1 (through replica 1); every replica applies it within the lag.
    const presence = (replica: number) =>
      set.client(replica).call("getWorker", { workerId: worker.id }).then(() => "present", (e: { code: number }) => status[e.code]);
    expect(await presence(1)).toBe("NOT_FOUND");
    for (const replica of [0, 2]) {
      const deadline = Date.now() + 5000;
      while ((await presence(replica)) !== "NOT_FOUND") {
        if (Date.now() > deadline) throw new Error(`replica ${replica} still shows the drained worker`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  });

  it("WatchWorkers on any replica yields the same events with the same revisions in the same order", async () => {
    const start = Number((await set.client(0).call("getRegistryStats")).revision) + 1;
    const watchers = [0, 1, 2].map((replica) => watch(set, replica, start));
    // Writes from every replica, interleaved.
    const { worker } = await set.client(1).call("registerWorker", { nodeId: "watched", capabilities: ["watched"], maxConcurrentTasks: 50 });
    await Promise.all(Array.from({ length: 30 }, (_, i) => set.client(i % 3).call("updateTaskCount", { workerId: worker.id, delta: 1 })));
    await set.client(2).call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 5 });
    await set.client(0).call("unregisterWorker", { workerId: worker.id });
    // Asked of the replica that made the last write, which applied it before answering. The leader's schedules
    // (earlier tests' silent workers changing health, expiring) may write more meanwhile: the histories are
    // compared up to this revision, which every watcher must reach.
    const last = Number((await set.client(0).call("getRegistryStats")).revision);
    await until(() => watchers.every((w) => (w.events.at(-1)?.revision ?? 0) >= last), "every watcher to reach the last revision");
    for (const w of watchers) w.cancel();
    const [a, b, c] = watchers.map((w) => w.events.filter((e) => e.revision <= last));
    expect(a!.map((e) => e.revision)).toEqual(Array.from({ length: last - start + 1 }, (_, i) => start + i));
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    // Each +1 is seen in commit order: the counts rise one by one.
    expect(a!.filter((e) => e.workerId === worker.id && e.type === 2).slice(0, 30).map((e) => e.currentTasks)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it("a watcher that reconnects to another replica with start_revision = last + 1 misses nothing and repeats nothing", async () => {
    const start = Number((await set.client(0).call("getRegistryStats")).revision) + 1;
    const { worker } = await set.client(0).call("registerWorker", { nodeId: "resumed", capabilities: ["resumed"], maxConcurrentTasks: 100 });
    const first = watch(set, 0, start);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await set.client(i % 3).call("updateTaskCount", { workerId: worker.id, delta: i % 2 === 0 ? 1 : -1 });
    })();
    await until(() => first.events.length >= 20, "the first watcher's events");
    first.cancel();
    const lastSeen = first.events.at(-1)!.revision;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = watch(set, 2, lastSeen + 1);
    await until(() => second.events.length >= 20, "the second watcher's events");
    writing = false;
    await writer;
    const end = Number((await set.client(1).call("getRegistryStats")).revision);
    // The leader's schedules may write past `end` meanwhile: the history is compared up to it.
    await until(() => (second.events.at(-1)?.revision ?? 0) >= end, "the second watcher to catch up");
    second.cancel();
    const revisions = [...first.events, ...second.events].map((e) => e.revision).filter((revision) => revision <= end);
    expect(revisions).toEqual(Array.from({ length: end - start + 1 }, (_, i) => start + i));
  });
});
