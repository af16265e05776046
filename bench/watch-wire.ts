/**
 * The few parts of a WatchWorkersResponse the watch load reads, straight
 * from its bytes (bench/watch-load.ts): a million events a second stay
 * affordable without protobuf-es.
 */
function varint(bytes: Buffer, at: { pos: number }): number {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = bytes[at.pos++];
    if (byte === undefined) return Number.NaN;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return value;
    scale *= 128;
  }
}

/** The fields of a message as [field number, wire type, value or body], for the few this needs. */
function* fields(bytes: Buffer): Generator<[number, number, number | Buffer]> {
  const at = { pos: 0 };
  while (at.pos < bytes.length) {
    const tag = varint(bytes, at);
    const wire = tag & 7;
    if (wire === 0) yield [tag >>> 3, 0, varint(bytes, at)];
    else if (wire === 2) {
      const length = varint(bytes, at);
      yield [tag >>> 3, 2, bytes.subarray(at.pos, at.pos + length)];
      at.pos += length;
    } else if (wire === 1) at.pos += 8;
    else if (wire === 5) at.pos += 4;
    else return;
  }
}

/** The WorkerEvents of a WatchWorkersResponse: `WorkerEvent event = 1` or `repeated WorkerEvent events = 2`. */
export function* events(response: Buffer): Generator<Buffer> {
  for (const [field, wire, event] of fields(response)) if ((field === 1 || field === 2) && wire === 2) yield event as Buffer;
}

/** How many `events` entries (field 2) a batched WatchWorkersResponse holds: their keys and lengths are walked, not their bodies. */
export function eventCount(response: Buffer): number {
  let count = 0;
  const at = { pos: 0 };
  while (at.pos < response.length) {
    const tag = varint(response, at);
    // A batched response has length-delimited fields only; anything else means the bytes are not one.
    if ((tag & 7) !== 2) break;
    // Read the length first: `at.pos += varint(...)` would add it to the position from before the length's own bytes.
    const length = varint(response, at);
    at.pos += length;
    if (tag >>> 3 === 2) count++;
  }
  return count;
}

/** WorkerEvent { ... Timestamp occurred_at = 4 } in wall-clock ms. */
export function occurredAt(event: Buffer): number | undefined {
  for (const [field, wire, timestamp] of fields(event)) {
    if (field !== 4 || wire !== 2) continue;
    let ms = 0;
    for (const [part, , value] of fields(timestamp as Buffer)) ms += part === 1 ? (value as number) * 1000 : part === 2 ? (value as number) / 1e6 : 0;
    return ms;
  }
  return undefined;
}
