import { create, toBinary } from "@bufbuild/protobuf";
import type { WorkerEvent } from "../domain/worker-events.js";
import { WatchWorkersResponseSchema, type WatchWorkersResponse } from "@sentinel/worker-registry-client/contract";
import { eventToProto } from "./proto-mapping.js";

/**
 * Each live event encoded once as a WatchWorkersResponse, whichever number of
 * watchers it goes to: every watcher is handed the same event object, and
 * encoding it again for each one was most of a fan-out's cost (issue 16).
 * Kept while any watcher's queue still holds the event, and no longer.
 */
export class WatchEventEncoder {
  private readonly encoded = new WeakMap<WorkerEvent, Buffer>();

  /** The response carrying `event`, as the bytes {@link serializeWatchResponse} sends unchanged. */
  bytes(event: WorkerEvent): Buffer {
    let bytes = this.encoded.get(event);
    if (bytes === undefined) {
      bytes = serializeWatchResponse(create(WatchWorkersResponseSchema, { event: eventToProto(event) }));
      this.encoded.set(event, bytes);
    }
    return bytes;
  }
}

/** WatchWorkers' response serializer: bytes from {@link WatchEventEncoder} as they are, and any message by protobuf-es. */
export function serializeWatchResponse(value: Buffer | WatchWorkersResponse): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const bytes = toBinary(WatchWorkersResponseSchema, value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
