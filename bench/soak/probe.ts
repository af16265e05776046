/**
 * The probe: a worker of its own, read with GetWorker 40 times a second on a
 * channel of its own (and kept alive with a unary heartbeat every 40th
 * call). Its latencies are the soak's p50 and p99.
 */
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { sleep } from "../proc.js";

export interface Probe {
  /** The GetWorker latencies (ms) since the last call, in call order; starts a new window. */
  takeLatencies(): number[];
  /** Calls that failed so far (the first five are printed on stderr). */
  readonly failures: number;
  /** Ends the probing loop. */
  stop(): Promise<void>;
  /** Unregisters the probe's worker (failures ignored) and closes its channel. */
  close(): Promise<void>;
}

/** Registers the probe's worker on the server at `address` and starts probing. */
export async function startProbe(address: string): Promise<Probe> {
  const probe = new WorkerRegistryClient({ address, retry: false, deadlineMs: 5000, channelOptions: { "grpc.channel_id": 1 } });
  const probeWorker = await probe.registerWorker({ nodeId: "soak-probe", capabilities: ["probe"], maxConcurrentTasks: 1 });
  let latencies: number[] = [];
  let failures = 0;
  let probing = true;
  const loop = (async () => {
    let beats = 0;
    while (probing) {
      const started = performance.now();
      try {
        if (++beats % 40 === 0) await probe.heartbeat(probeWorker.id);
        else {
          await probe.getWorker(probeWorker.id);
          latencies.push(performance.now() - started);
        }
      } catch (error) {
        failures++;
        if (failures <= 5) console.error(`probe failed: ${(error as Error).message}`);
      }
      await sleep(Math.max(0, 25 - (performance.now() - started)));
    }
  })();
  return {
    takeLatencies() {
      const window = latencies;
      latencies = [];
      return window;
    },
    get failures() {
      return failures;
    },
    async stop() {
      probing = false;
      await loop;
    },
    async close() {
      await probe.unregisterWorker(probeWorker.id).catch(() => undefined);
      probe.close();
    },
  };
}
