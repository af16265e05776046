/** One sample of the soak, taken every interval (sampler.ts), judged (checks.ts) and printed (soak-report.ts). */
export interface Sample {
  readonly elapsedS: number;
  readonly rssMiB: number;
  readonly heapMiB: number;
  readonly openFds: number;
  readonly heartbeatStreams: number;
  readonly watchStreams: number;
  readonly workers: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly probes: number;
  readonly opsPerS: number;
  /** The machine's 1-minute load average: latency on a shared machine means little without it. */
  readonly loadAvg: number;
}
