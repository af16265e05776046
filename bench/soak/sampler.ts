/** The soak's samples: every interval, the server's memory, handles, streams and workers, the load's throughput and the probe's latency. */
import os from "node:os";
import { rssMiB, sleep } from "../proc.js";
import type { LoadProcess } from "./load-process.js";
import { totalOps } from "./load-tally.js";
import type { Probe } from "./probe.js";
import type { Sample } from "./sample.js";
import { printSample, SAMPLE_HEADER } from "./soak-report.js";
import { metric, scrapeMetrics } from "./server-metrics.js";
import type { SoakServer } from "./soak-server.js";
import { percentile } from "./statistics.js";

/** Samples every `intervalS` for `minutes`, printing each as a row under a header; returns the samples. */
export async function sampleFor(options: { readonly minutes: number; readonly intervalS: number }, server: SoakServer, load: LoadProcess, probe: Probe): Promise<Sample[]> {
  console.log(SAMPLE_HEADER);
  const samples: Sample[] = [];
  const startedAt = performance.now();
  const endAt = startedAt + options.minutes * 60_000;
  let previousOps = totalOps(await load.stats());
  let previousAt = performance.now();
  probe.takeLatencies();
  while (performance.now() < endAt) {
    await sleep(Math.min(options.intervalS * 1000, Math.max(0, endAt - performance.now())));
    const window = probe.takeLatencies().sort((a, b) => a - b);
    const text = await scrapeMetrics(server.metricsPort);
    const stats = await load.stats();
    const now = performance.now();
    const ops = totalOps(stats);
    const sample: Sample = {
      elapsedS: (now - startedAt) / 1000,
      rssMiB: rssMiB(server.pid),
      heapMiB: metric(text, "nodejs_heap_size_used_bytes") / 2 ** 20,
      openFds: metric(text, "process_open_fds"),
      heartbeatStreams: metric(text, "worker_registry_open_streams", 'kind="heartbeat"'),
      watchStreams: metric(text, "worker_registry_open_streams", 'kind="watch"'),
      workers: metric(text, "worker_registry_workers"),
      p50Ms: percentile(window, 50),
      p99Ms: percentile(window, 99),
      probes: window.length,
      opsPerS: (ops - previousOps) / ((now - previousAt) / 1000),
      loadAvg: os.loadavg()[0] ?? Number.NaN,
    };
    previousOps = ops;
    previousAt = now;
    samples.push(sample);
    printSample(sample);
  }
  return samples;
}
