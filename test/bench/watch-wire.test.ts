import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { WatchWorkersResponseSchema, WorkerEventSchema, WorkerSchema } from "@sentinel/worker-registry-client/contract";
import { describe, expect, it } from "vitest";
import { eventCount, events, occurredAt } from "../../bench/watch-wire.js";

// Large enough that each event's length takes two varint bytes: a reader that skips the length's own bytes misparses.
const event = (revision: number, atMs: number) =>
  create(WorkerEventSchema, {
    revision: BigInt(revision),
    worker: create(WorkerSchema, { id: `worker-${revision}`, nodeId: "n".repeat(200), capabilities: ["general"] }),
    occurredAt: timestampFromMs(atMs),
  });
const bytes = (response: Parameters<typeof create<typeof WatchWorkersResponseSchema>>[1]) =>
  Buffer.from(toBinary(WatchWorkersResponseSchema, create(WatchWorkersResponseSchema, response)));

describe("the watch load's reading of WatchWorkersResponse bytes", () => {
  it("counts the events of a batched response and reads each one's occurred_at", () => {
    const batch = bytes({ events: [event(1, 1_000), event(2, 2_500), event(3, 4_250)] });
    expect(eventCount(batch)).toBe(3);
    expect([...events(batch)].map(occurredAt)).toEqual([1_000, 2_500, 4_250]);
  });

  it("reads the one event of a single response, which has no batch entries", () => {
    const single = bytes({ event: event(7, 9_999) });
    expect(eventCount(single)).toBe(0);
    expect([...events(single)].map(occurredAt)).toEqual([9_999]);
  });
});
