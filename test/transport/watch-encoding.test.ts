import { create, equals, fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WatchWorkersResponseSchema, WorkerEventSchema } from "@sentinel/worker-registry-client/contract";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { eventToProto } from "../../src/transport/proto-mapping.js";
import { serializeWatchResponse, WatchEventEncoder } from "../../src/transport/watch-encoding.js";

const event: WorkerEvent = {
  revision: 42,
  type: "updated",
  occurredAtMs: 1_767_225_600_123,
  worker: {
    id: "worker-1",
    nodeId: "node-a",
    capabilities: ["general", "gpu"],
    maxConcurrentTasks: 8,
    currentTasks: 3,
    availableCapacity: 5,
    successRate: 0.75,
    healthStatus: "healthy",
    registeredAtMs: 1_767_225_000_000,
    lastHeartbeatAtMs: 1_767_225_600_000,
    labels: { zone: "a" },
    version: "1.2.3",
    state: "draining",
    drainDeadlineMs: 1_767_225_900_456,
    metrics: { tasksCompleted: 10, tasksFailedCount: 2, averageTaskDurationMs: 1500 },
  },
};

describe("WatchEventEncoder", () => {
  it("writes the response protobuf-es writes for the event, which decodes to the same message", () => {
    const expected = create(WatchWorkersResponseSchema, { event: eventToProto(event) });
    const bytes = new WatchEventEncoder().bytes(event);
    expect(bytes).toEqual(serializeWatchResponse(expected));
    expect(equals(WatchWorkersResponseSchema, fromBinary(WatchWorkersResponseSchema, bytes), expected)).toBe(true);
  });

  it("encodes an event once for every watcher it goes to", () => {
    const encoder = new WatchEventEncoder();
    expect(encoder.bytes(event)).toBe(encoder.bytes(event));
    expect(encoder.bytes({ ...event, revision: 43 })).not.toBe(encoder.bytes(event));
    expect(encoder.entry(event)).toBe(encoder.entry(event));
    expect(encoder.entry({ ...event, revision: 43 })).not.toBe(encoder.entry(event));
  });

  it("writes a batch that decodes to a response whose events are the events, in order, and no event", () => {
    const events: WorkerEvent[] = [
      event,
      { ...event, revision: 43, type: "health_changed", previousHealth: "healthy", worker: { ...event.worker, healthStatus: "degraded" } },
      { ...event, revision: 44, type: "registered", worker: { ...event.worker, id: "worker-2", labels: {} } },
    ];
    const decoded = fromBinary(WatchWorkersResponseSchema, new WatchEventEncoder().batch(events));
    expect(decoded.event).toBeUndefined();
    expect(decoded.events).toHaveLength(events.length);
    decoded.events.forEach((decodedEvent, i) => expect(equals(WorkerEventSchema, decodedEvent, eventToProto(events[i]!))).toBe(true));
    // The same bytes protobuf-es writes for the whole message.
    expect(new WatchEventEncoder().batch(events)).toEqual(serializeWatchResponse(create(WatchWorkersResponseSchema, { events: events.map(eventToProto) })));
  });

  it("gives watchers level with each other the one batch made for the first, and a new one when any event differs", () => {
    const encoder = new WatchEventEncoder();
    const [a, b, c, d] = [42, 43, 44, 45].map((revision) => ({ ...event, revision }));
    const first = encoder.batch([a!, b!, d!]);
    expect(encoder.batch([a!, b!, d!])).toBe(first);
    // Same first and last events and the same count, another in the middle (a watcher with another filter).
    const other = encoder.batch([a!, c!, d!]);
    expect(other).not.toBe(first);
    expect(fromBinary(WatchWorkersResponseSchema, other).events.map((e) => Number(e.revision))).toEqual([42, 44, 45]);
    expect(encoder.batch([a!, b!])).not.toBe(first);
  });

  it("gives the same bytes for either form whether or not the other form was made first", () => {
    const singleFirst = new WatchEventEncoder();
    const single = singleFirst.bytes(event);
    const entryFromSingle = singleFirst.entry(event);
    const entryFirst = new WatchEventEncoder();
    const entry = entryFirst.entry(event);
    const singleFromEntry = entryFirst.bytes(event);
    expect(entryFromSingle).toEqual(entry);
    expect(singleFromEntry).toEqual(single);
    // Copies: changing the key of one form left the other intact.
    expect(single[0]).toBe(0x0a);
    expect(entry[0]).toBe(0x12);
  });
});
