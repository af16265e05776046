/**
 * The replica scenario's view from a client: each replica's GetRegistryStats
 * (who leads, the revision applied, the replication lag it reports), and
 * visibility probes, a write answered by one replica and then read on
 * another. Runs in the suite's own process, on one grpc-js channel per
 * replica (bench/transport.ts), which reconnects by itself: a connection of
 * the lighter node:http2 client that sat idle through a loaded window was
 * once found destroyed when the window ended. A few calls a second beside
 * the load.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  GetRegistryStatsRequestSchema,
  GetRegistryStatsResponseSchema,
  GetWorkerRequestSchema,
  GetWorkerResponseSchema,
  RegisterWorkerRequestSchema,
  RegisterWorkerResponseSchema,
} from "../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { sleep } from "./proc.js";
import { registryPath } from "./protocols.js";
import type { LagSummary } from "./results.js";
import { connect, type Connection } from "./transport.js";

/** How often a probe asks the reading replica for the worker just written. */
const POLL_MS = 2;
/** A write not visible on the other replica after this is counted as failed. */
const PROBE_TIMEOUT_MS = 5000;

/** One replica's answer to GetRegistryStats, as the scenario uses it. */
export interface ReplicaStatsSample {
  readonly replicaId: string;
  readonly leading: boolean;
  readonly leaderId: string;
  readonly revision: number;
  readonly workers: number;
  readonly lagMs: number;
}

/** What {@link sampleReplication} saw over a window. */
export interface ReplicationSamples {
  /** Every replica's reported lag at every sample. */
  readonly reported: number[];
  /** Each probe's write-to-visible time. */
  readonly probed: number[];
  readonly failed: number;
}

export class ReplicaProbes {
  private readonly connections: Connection[];
  private probes = 0;

  constructor(addresses: readonly string[]) {
    this.connections = addresses.map((address, i) => connect("grpc-js", address, i));
  }

  get size(): number {
    return this.connections.length;
  }

  async stats(replica: number): Promise<ReplicaStatsSample> {
    const stats = await call(this.connections[replica]!, "GetRegistryStats", GetRegistryStatsRequestSchema, {}, GetRegistryStatsResponseSchema);
    const lag = stats.replica?.replicationLag;
    return {
      replicaId: stats.replica?.replicaId ?? "",
      leading: stats.replica?.leading ?? false,
      leaderId: stats.replica?.leaderId ?? "",
      revision: Number(stats.revision),
      workers: stats.totalWorkers,
      lagMs: lag === undefined ? 0 : Number(lag.seconds) * 1000 + lag.nanos / 1e6,
    };
  }

  allStats(): Promise<ReplicaStatsSample[]> {
    return Promise.all(this.connections.map((_, i) => this.stats(i)));
  }

  /**
   * Registers a worker on replica `from`, then asks replica `to` for it every
   * 2 ms: resolves to the ms from the registration's answer until `to` knows
   * the worker, or undefined if it did not within 5 s.
   */
  async visibilityMs(from: number, to: number): Promise<number | undefined> {
    const n = ++this.probes;
    const registered = await call(
      this.connections[from]!,
      "RegisterWorker",
      RegisterWorkerRequestSchema,
      { nodeId: `lag-probe-${process.pid}-${n}`, capabilities: ["lag-probe"], maxConcurrentTasks: 1 },
      RegisterWorkerResponseSchema,
    );
    const workerId = registered.worker!.id;
    const answeredAt = performance.now();
    while (performance.now() - answeredAt < PROBE_TIMEOUT_MS) {
      const found = await call(this.connections[to]!, "GetWorker", GetWorkerRequestSchema, { workerId }, GetWorkerResponseSchema).then(
        () => true,
        (error: Error) => {
          if (error.message.startsWith("NOT_FOUND")) return false;
          throw error;
        },
      );
      if (found) return performance.now() - answeredAt;
      await sleep(POLL_MS);
    }
    return undefined;
  }

  close(): void {
    for (const connection of this.connections) connection.close();
  }
}

/**
 * For `durationMs`: every replica's stats every 500 ms, and visibility
 * probes back to back with 250 ms between them, each written on one replica
 * and read on the next (0 → 1, 1 → 2, 2 → 0, …).
 */
export async function sampleReplication(probes: ReplicaProbes, durationMs: number): Promise<ReplicationSamples> {
  const until = performance.now() + durationMs;
  const reported: number[] = [];
  const probed: number[] = [];
  let failed = 0;
  const sampling = (async () => {
    while (performance.now() < until) {
      for (const stats of await probes.allStats()) reported.push(stats.lagMs);
      await sleep(500);
    }
  })();
  const probing = (async () => {
    for (let k = 0; performance.now() < until; k++) {
      const ms = await probes.visibilityMs(k % probes.size, (k + 1) % probes.size).catch(() => undefined);
      if (ms === undefined) failed++;
      else probed.push(ms);
      await sleep(250);
    }
  })();
  await Promise.all([sampling, probing]);
  return { reported, probed, failed };
}

/** Median, 99th percentile and worst of `values` (NaN for none). */
export function lagSummary(values: readonly number[]): LagSummary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return { samples: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1) ?? Number.NaN };
}

function call<I extends DescMessage, O extends DescMessage>(connection: Connection, method: string, input: I, init: MessageInitShape<I>, output: O): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) =>
    connection.unary(registryPath(method), Buffer.from(toBinary(input, create(input, init))), (error, response) => {
      if (error !== undefined || response === undefined) reject(new Error(error ?? `${method}: no response`));
      else resolve(fromBinary(output, response));
    }),
  );
}
