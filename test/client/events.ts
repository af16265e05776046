import type { EventEmitter } from "node:events";
import type { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import type { WorkerNodeEvents } from "../../clients/typescript/src/worker-node-options.js";

type Payload<K extends keyof WorkerNodeEvents> = WorkerNodeEvents[K][0];

/**
 * The payload of the next `event` that satisfies `accept`, or a rejection
 * naming what was awaited after `timeoutMs`: tests wait for what happens,
 * never for a fixed time.
 */
export function nextEvent<K extends keyof WorkerNodeEvents>(
  node: WorkerNode,
  event: K,
  accept: (payload: Payload<K>) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Payload<K>> {
  const emitter = node as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const listener = (payload: Payload<K>) => {
      if (!accept(payload)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(payload);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no ${event} event within ${timeoutMs}ms`));
    }, timeoutMs);
    emitter.on(event, listener);
  });
}
