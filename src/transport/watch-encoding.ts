import { create, toBinary } from "@bufbuild/protobuf";
import type { WorkerEvent } from "../domain/worker-events.js";
import { WatchWorkersResponseSchema, type WatchWorkersResponse } from "@sentinel/worker-registry-client/contract";
import { eventToProto } from "./proto-mapping.js";

/**
 * The first byte of each form: the key of a length-delimited field, 1
 * (`event`) or 2 (`events`). Both forms are that key, the varint length and
 * the WorkerEvent's bytes, so one is the other with its first byte changed.
 */
const EVENT_KEY = 0x0a;
const EVENTS_KEY = 0x12;

/**
 * Each live event encoded once, whichever number of watchers it goes to:
 * every watcher is handed the same event object, and encoding it again for
 * each one was most of a fan-out's cost (issue 16). Two forms, each made on
 * first use: the whole response `WatchWorkersResponse{event}` for watchers
 * that take one event per message, and the `events` entry (field 2) for
 * watchers that take several. A batch is the entries laid end to end: a
 * repeated field's entries concatenate, so a batch costs a copy, never an
 * encoding per watcher. Kept while any watcher's queue still holds the event,
 * and no longer.
 */
export class WatchEventEncoder {
  private readonly single = new WeakMap<WorkerEvent, Buffer>();
  private readonly entries = new WeakMap<WorkerEvent, Buffer>();
  /** The last batch made, until another replaces it: it holds its events and bytes no longer than that. */
  private lastBatch: { readonly events: readonly WorkerEvent[]; readonly bytes: Buffer } | undefined;

  /** The response carrying `event` alone in field 1, as the bytes {@link serializeWatchResponse} sends unchanged. */
  bytes(event: WorkerEvent): Buffer {
    let bytes = this.single.get(event);
    if (bytes === undefined) {
      const entry = this.entries.get(event);
      bytes = entry !== undefined ? rekeyed(entry, EVENT_KEY) : serializeWatchResponse(create(WatchWorkersResponseSchema, { event: eventToProto(event) }));
      this.single.set(event, bytes);
    }
    return bytes;
  }

  /** `event` as one entry of the response's `events` (field 2): on its own, a response with that one event. */
  entry(event: WorkerEvent): Buffer {
    let entry = this.entries.get(event);
    if (entry === undefined) {
      const bytes = this.single.get(event);
      entry = bytes !== undefined ? rekeyed(bytes, EVENTS_KEY) : serializeWatchResponse(create(WatchWorkersResponseSchema, { events: [eventToProto(event)] }));
      this.entries.set(event, entry);
    }
    return entry;
  }

  /**
   * The response carrying `events`, in the order given, in field 2. Watchers
   * that are level with each other are handed the same events in the same
   * turn: the last batch made is given again when its events are the same
   * objects, so a fan-out copies each batch once rather than once a watcher.
   */
  batch(events: readonly WorkerEvent[]): Buffer {
    const last = this.lastBatch;
    if (last !== undefined && last.events.length === events.length && last.events.every((event, i) => event === events[i])) return last.bytes;
    const bytes = Buffer.concat(events.map((event) => this.entry(event)));
    this.lastBatch = { events, bytes };
    return bytes;
  }
}

/** A copy of one form with the other form's first byte. */
function rekeyed(form: Buffer, key: number): Buffer {
  const copy = Buffer.from(form);
  copy[0] = key;
  return copy;
}

/** WatchWorkers' response serializer: bytes from {@link WatchEventEncoder} as they are, and any message by protobuf-es. */
export function serializeWatchResponse(value: Buffer | WatchWorkersResponse): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const bytes = toBinary(WatchWorkersResponseSchema, value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
