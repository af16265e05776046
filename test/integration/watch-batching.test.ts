import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryServer, ServeOptions } from "../../src/app.js";
import { BATCH_FLUSH_INTERVAL_MS, REPLAY_PAGE_EVENTS } from "../../src/transport/watch-streams.js";
import { WorkerEventType } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { parseExposition, valueOf } from "../support/exposition.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { eventSummary as summary, openWatch, outpaceSlowWatcher, revisions, startWatchRegistry, waitUntil, type Watch } from "../support/watch-issue4.js";

// WatchWorkers with max_events_per_message above 1: the same events as one
// per message, packed. The one-per-message form is in watch.test.ts.

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const startServer = (registry: ServeOptions["registry"] = {}, metricsPort?: number): Promise<RegistryServer> => startWatchRegistry(dirs, { registry, metricsPort });
/** How many events each message of a watch carried, and whether any carried both fields. */
function shape(watch: Watch) {
  return {
    sizes: watch.messages.map((message) => (message.event === undefined ? 0 : 1) + message.events.length),
    withBoth: watch.messages.filter((message) => message.event !== undefined && message.events.length > 0).length,
    withEvent: watch.messages.filter((message) => message.event !== undefined).length,
  };
}

describe("WatchWorkers with max_events_per_message", () => {
  let server: RegistryServer;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startServer();
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
  });
  afterAll(async () => {
    client.close();
    await server.close();
  });

  const register = async (nodeId: string, capability: string) =>
    (await client.call("registerWorker", { nodeId, capabilities: [capability], maxConcurrentTasks: 10_000 })).worker;
  const revisionNow = async () => Number((await client.call("getRegistryStats")).revision);

  it("delivers the same events in the same order as one per message, from a replay of several pages into live writes", async () => {
    const capability = "batch-same";
    const workers = await Promise.all([0, 1, 2, 3].map((i) => register(`batch-same-${i}`, capability)));
    const start = (await revisionNow()) + 1;
    const backlog = REPLAY_PAGE_EVENTS * 2 + 100;
    for (let i = 0; i < backlog; i++) await client.call("updateTaskCount", { workerId: workers[i % workers.length]!.id, delta: 1 });
    const filter = { capabilities: [capability] };
    const single = openWatch(client, { filter, startRevision: BigInt(start) });
    const batched = openWatch(client, { filter, startRevision: BigInt(start), maxEventsPerMessage: 100 });
    const pairs = openWatch(client, { filter, startRevision: BigInt(start), maxEventsPerMessage: 2 });
    try {
      // Live writes from several workers at once, some while the replays still run.
      await Promise.all(
        workers.map(async (worker) => {
          for (let i = 0; i < 50; i++) {
            await client.call("updateTaskCount", { workerId: worker.id, delta: -1 });
            await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 1 });
          }
        }),
      );
      const total = backlog + workers.length * 100;
      expect((await revisionNow()) - start + 1).toBe(total);
      for (const watch of [single, batched, pairs]) await waitUntil("every event on each watch", () => watch.events.length >= total, 10_000);

      const expected = Array.from({ length: total }, (_, i) => start + i);
      expect(revisions(single.events)).toEqual(expected);
      expect(batched.events.map(summary)).toEqual(single.events.map(summary));
      expect(pairs.events.map(summary)).toEqual(single.events.map(summary));

      // One per message without the field: `event` in every message, `events` in none.
      expect(shape(single)).toEqual({ sizes: single.messages.map(() => 1), withBoth: 0, withEvent: total });
      for (const [watch, limit] of [
        [batched, 100],
        [pairs, 2],
      ] as const) {
        const { sizes, withBoth, withEvent } = shape(watch);
        expect(withBoth).toBe(0);
        expect(withEvent).toBe(0);
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1);
        expect(Math.max(...sizes)).toBe(limit);
        expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(total);
      }
      // The replay went out in full messages: at most three of 100 per page of 256.
      const replayed = batched.messages.filter((message) => Number(message.events[0]!.revision) < start + backlog);
      expect(replayed.length).toBeLessThanOrEqual(Math.ceil(backlog / REPLAY_PAGE_EVENTS) * Math.ceil(REPLAY_PAGE_EVENTS / 100));
    } finally {
      single.cancel();
      batched.cancel();
      pairs.cancel();
    }
  });

  it("packs the events of one change into one live message: a re-registration's removal and registration", async () => {
    const capability = "batch-live";
    await register("batch-live-node", capability);
    const start = (await revisionNow()) + 1;
    const watch = openWatch(client, { filter: { capabilities: [capability] }, startRevision: BigInt(start), maxEventsPerMessage: 10 });
    try {
      await waitUntil("the watch to open", () => server.registry.watcherCount >= 1, 2000);
      // Live or still in its one-page replay, the two events of the change go out together.
      const replacement = await register("batch-live-node", capability);
      await watch.waitFor("the new registration", (e) => e.type === WorkerEventType.REGISTERED && e.worker?.id === replacement.id);
      expect(watch.events.map((e) => e.type)).toEqual([WorkerEventType.UNREGISTERED, WorkerEventType.REGISTERED]);
      expect(revisions(watch.events)).toEqual([start, start + 1]);
      expect(shape(watch).sizes).toEqual([2]);
    } finally {
      watch.cancel();
    }
  });

  it("writes a steady stream of live events at most every BATCH_FLUSH_INTERVAL_MS, in fuller messages", async () => {
    const capability = "batch-interval";
    const worker = await register("batch-interval-node", capability);
    const start = (await revisionNow()) + 1;
    const updates = 20;
    const watch = openWatch(client, { filter: { capabilities: [capability] }, startRevision: BigInt(start), maxEventsPerMessage: 100 });
    try {
      await waitUntil("the watch to open", () => server.registry.watcherCount >= 1, 2000);
      const began = performance.now();
      // One after another: each its own event-loop turn on the server, a ms or two apart on a quiet machine.
      for (let i = 0; i < updates; i++) await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
      await watch.waitFor("the last update", (e) => Number(e.revision) === start + updates - 1);
      const elapsedMs = watch.arrivals.at(-1)! - began;
      expect(revisions(watch.events)).toEqual(Array.from({ length: updates }, (_, i) => start + i));
      // The live messages were written between the first call and the last arrival, at least the interval
      // apart, so however slow the machine there are no more than this many (one a call, were every turn
      // written at once). One more may come from the replay: a watch reads the log until it has caught up,
      // and an event committed before it goes live reaches it in a replay page.
      expect(watch.messages.length).toBeLessThanOrEqual(Math.floor(elapsedMs / BATCH_FLUSH_INTERVAL_MS) + 2);
    } finally {
      watch.cancel();
    }
  });

  it("refuses more than 1000 with INVALID_ARGUMENT naming max_events_per_message, and takes 1000", async () => {
    const refused = openWatch(client, { startRevision: 0n, maxEventsPerMessage: 1001 });
    const final = await refused.done;
    expect({ code: status[final.code], details: final.details }).toEqual({
      code: "INVALID_ARGUMENT",
      details: "max_events_per_message must be between 0 and 1000, got 1001",
    });
    expect(refused.messages).toEqual([]);

    const start = (await revisionNow()) + 1;
    const largest = openWatch(client, { startRevision: BigInt(start), maxEventsPerMessage: 1000 });
    try {
      await register("batch-largest", "batch-largest");
      expect(Number((await largest.waitFor("the registration", () => true)).revision)).toBe(start);
      expect(shape(largest).withEvent).toBe(0);
    } finally {
      largest.cancel();
    }
  });
});

describe("a batching watcher that never reads", () => {
  it("is ended with RESOURCE_EXHAUSTED once watchBufferEvents wait, having received the log without a gap", async () => {
    const server = await startServer({ watchBufferEvents: 50 });
    const address = `127.0.0.1:${server.port}`;
    const client = new RawRegistryClient(address);
    const slowClient = new RawRegistryClient(address, { "grpc.channel_id": 87 });
    const readerClient = new RawRegistryClient(address, { "grpc.channel_id": 88 });
    try {
      const { slow, reader, start, total, dropped } = await outpaceSlowWatcher(
        { writer: client, slow: slowClient, reader: readerClient },
        server.registry,
        { nodePrefix: "batch-slow", capability: "batch-slow", writesPerWorker: 1500, request: { maxEventsPerMessage: 8 } },
      );
      expect(dropped).toBeGreaterThan(50);
      expect(dropped).toBeLessThan(total);
      await waitUntil("the reading watcher to see every event", () => reader.events.length >= total, 10_000);
      expect(revisions(reader.events)).toEqual(reader.events.map((_, i) => start + i));
      reader.cancel();

      slow.startReading();
      const final = await slow.done;
      expect(final.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(final.details).toBe("watcher fell 50 events behind and was dropped; resume from the last revision you received + 1, or list again");
      // What it got is the log from `start` without a gap: resuming after the last one loses nothing.
      expect(slow.events.length).toBeGreaterThan(0);
      expect(revisions(slow.events)).toEqual(slow.events.map((_, i) => start + i));
      expect(Math.max(...shape(slow).sizes)).toBeLessThanOrEqual(8);
    } finally {
      slowClient.close();
      readerClient.close();
      client.close();
      await server.close();
    }
  });
});

describe("delivery lag of a batching watcher", () => {
  it("is observed once per live event, not once per message", async () => {
    const server = await startServer({}, 0);
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const scrape = async () => parseExposition(await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text());
    try {
      const workers = await Promise.all(
        [0, 1, 2, 3].map(async (i) => (await client.call("registerWorker", { nodeId: `batch-lag-${i}`, capabilities: ["batch-lag"], maxConcurrentTasks: 100 })).worker),
      );
      const start = Number((await client.call("getRegistryStats")).revision) + 1;
      // A replay of one event first: replayed events are not timed.
      const watch = openWatch(client, { startRevision: BigInt(start - 1), maxEventsPerMessage: 50 });
      // Once it has arrived the watch is live: the server asks for the next page as soon as the connection takes one.
      await watch.waitFor("the replayed registration", () => true);
      await Promise.all(workers.map(async (worker) => Promise.all(Array.from({ length: 10 }, () => client.call("updateTaskCount", { workerId: worker.id, delta: 1 })))));
      await waitUntil("every live event", () => watch.events.length >= 41, 5000);
      watch.cancel();
      expect(valueOf(await scrape(), "worker_registry_watch_delivery_lag_seconds_count")).toBe(40);
    } finally {
      client.close();
      await server.close();
    }
  });
});
