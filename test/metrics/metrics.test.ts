import { status, type ClientDuplexStream, type ClientReadableStream } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { parseServeArgs, serveUsage } from "../../src/cli/serve-command.js";
import { readBuildInfo } from "../../src/build-info.js";
import { HEARTBEAT_TIMING_SAMPLE } from "../../src/transport/heartbeat-streams.js";
import { parseExposition, valueOf } from "../support/exposition.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";

describe("Prometheus endpoint", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: RawRegistryClient;
  let heartbeatStream: ClientDuplexStream<object, any>;
  let watchStream: ClientReadableStream<any>;
  const worker = { capabilities: ["metrics"], maxConcurrentTasks: 5 };
  let lateRegistrations = 0;
  /** One more than the timing sample: the first and the 17th are timed. */
  const STREAMED_HEARTBEATS = HEARTBEAT_TIMING_SAMPLE + 1;

  const url = (path: string) => `http://127.0.0.1:${server.metricsPort}${path}`;
  const scrape = async () => parseExposition(await (await fetch(url("/metrics"))).text());

  beforeAll(async () => {
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, metricsPort: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);

    const ids: string[] = [];
    for (const nodeId of ["m-1", "m-2", "m-3"]) ids.push((await client.call("registerWorker", { nodeId, ...worker })).worker.id);
    const [first, second] = ids as [string, string, string];
    await client.call("heartbeat", { workerId: first });
    await client.call("heartbeat", { workerId: second });

    heartbeatStream = client.grpc.heartbeatStream();
    heartbeatStream.on("error", () => {});
    const replies = new Promise<void>((resolve) => {
      let count = 0;
      heartbeatStream.on("data", () => ++count === STREAMED_HEARTBEATS && resolve());
    });
    for (let sequence = 1; sequence <= STREAMED_HEARTBEATS; sequence++) heartbeatStream.write({ workerId: first, sequence });
    await replies;

    const kept = await client.call("acquireWorker", { filter: { capabilities: ["metrics"] } });
    const returned = await client.call("acquireWorker", { filter: { capabilities: ["metrics"] } });
    await client.call("releaseWorker", { reservationId: returned.reservationId, success: true, durationMs: 100 });
    expect(kept.reservationId).not.toBe(returned.reservationId);

    const gone = (await client.call("registerWorker", { nodeId: "m-gone", ...worker })).worker.id;
    await client.call("unregisterWorker", { workerId: gone });
    expect((await client.fail("getWorker", { workerId: gone })).code).toBe(status.NOT_FOUND);

    watchStream = (client.grpc as unknown as { watchWorkers(request: object): ClientReadableStream<any> }).watchWorkers({});
    watchStream.on("error", () => {});
    // A watch opened without a start revision is live once the server has it: a registration after that is
    // delivered live, and timed. Registered until one arrives, since nothing acknowledges the watch before.
    const delivered = new Promise<void>((resolve) => watchStream.once("data", () => resolve()));
    const late: Promise<unknown>[] = [];
    const registering = setInterval(() => late.push(client.call("registerWorker", { nodeId: `m-late-${late.length}`, ...worker })), 50);
    await delivered.finally(() => clearInterval(registering));
    await Promise.all(late);
    lateRegistrations = late.length;
  });
  afterAll(async () => {
    heartbeatStream.cancel();
    watchStream.cancel();
    client.close();
    await server.close();
    dirs.cleanup();
  });

  it("exposes fleet, capacity, stream, counter, eviction, replica, build and latency series with the traffic's values", async () => {
    // The watch call reaches the server asynchronously; nothing acknowledges it before the first event.
    const samples = await vi.waitFor(async () => {
      const s = await scrape();
      expect(valueOf(s, "worker_registry_open_streams", { kind: "watch" })).toBe(1);
      return s;
    });

    const workers = 3 + lateRegistrations;
    expect(lateRegistrations).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "worker_registry_registrations_total")).toBe(workers + 1);
    expect(valueOf(samples, "worker_registry_workers", { health: "healthy" })).toBe(workers);
    expect(valueOf(samples, "worker_registry_workers", { health: "degraded" })).toBe(0);
    expect(valueOf(samples, "worker_registry_workers", { health: "unhealthy" })).toBe(0);
    // Used and free are parts of one whole: they add up to the capacity, 5 slots a worker.
    expect(valueOf(samples, "worker_registry_task_slots", { usage: "used" })).toBe(1);
    expect(valueOf(samples, "worker_registry_task_slots", { usage: "free" })).toBe(workers * 5 - 1);
    expect(valueOf(samples, "worker_registry_active_reservations")).toBe(1);
    expect(valueOf(samples, "worker_registry_open_streams", { kind: "heartbeat" })).toBe(1);
    expect(valueOf(samples, "worker_registry_open_streams", { kind: "introspection" })).toBe(0);
    expect(valueOf(samples, "worker_registry_watchers")).toBe(1);
    // Two unary heartbeats and 17 on the stream; registering is not a heartbeat.
    expect(valueOf(samples, "worker_registry_heartbeats_total")).toBe(2 + STREAMED_HEARTBEATS);
    // Streamed heartbeats are timed one in 16: the first and the 17th.
    expect(valueOf(samples, "worker_registry_heartbeat_handling_seconds_count")).toBe(2);
    expect(valueOf(samples, "worker_registry_acquisitions_total", { result: "acquired" })).toBe(2);
    expect(valueOf(samples, "worker_registry_acquisitions_total", { result: "no_match" })).toBe(0);
    expect(valueOf(samples, "worker_registry_releases_total")).toBe(1);
    expect(valueOf(samples, "worker_registry_reservations_expired_total")).toBe(0);
    expect(valueOf(samples, "worker_registry_removals_total", { reason: "unregistered" })).toBe(1);
    expect(valueOf(samples, "worker_registry_removals_total", { reason: "expired" })).toBe(0);
    expect(valueOf(samples, "worker_registry_removals_total", { reason: "replaced" })).toBe(0);
    // The release recorded one successful completion.
    expect(valueOf(samples, "worker_registry_task_completions_total", { outcome: "succeeded" })).toBe(1);
    expect(valueOf(samples, "worker_registry_task_completions_total", { outcome: "failed" })).toBe(0);
    expect(valueOf(samples, "worker_registry_refused_calls_total", { method: "GetWorker", code: "NOT_FOUND" })).toBe(1);
    expect(valueOf(samples, "worker_registry_watch_delivery_lag_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "worker_registry_watchers_dropped_total")).toBe(0);
    expect(valueOf(samples, "worker_registry_eviction_paused")).toBe(0);
    expect(valueOf(samples, "worker_registry_eviction_pauses_total")).toBe(0);
    // A lone SQLite process leads, writes, and never lags.
    expect(valueOf(samples, "worker_registry_leading")).toBe(1);
    expect(valueOf(samples, "worker_registry_leadership_terms_total")).toBe(1);
    expect(valueOf(samples, "worker_registry_store_writable")).toBe(1);
    expect(valueOf(samples, "worker_registry_replication_lag_seconds")).toBe(0);
    expect(valueOf(samples, "worker_registry_applied_revision")).toBeGreaterThanOrEqual(workers + 1 + 2);
    const build = readBuildInfo();
    expect(valueOf(samples, "worker_registry_build_info", { version: build.version, commit: build.commit, node_version: process.version })).toBe(1);

    const rpcCount = (method: string, code: string) => valueOf(samples, "worker_registry_rpc_duration_seconds_count", { method, code });
    expect(rpcCount("RegisterWorker", "OK")).toBe(workers + 1);
    expect(rpcCount("Heartbeat", "OK")).toBe(2);
    expect(rpcCount("AcquireWorker", "OK")).toBe(2);
    expect(rpcCount("ReleaseWorker", "OK")).toBe(1);
    expect(rpcCount("GetWorker", "NOT_FOUND")).toBe(1);
    expect(valueOf(samples, "worker_registry_rpc_duration_seconds_bucket", { method: "GetWorker", code: "NOT_FOUND", le: "+Inf" })).toBe(1);
    const buckets = samples.filter((s) => s.name === "worker_registry_rpc_duration_seconds_bucket" && s.labels.method === "GetWorker").map((s) => s.labels.le);
    expect(buckets).toEqual(["0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]);
    // Streams are not timed.
    expect(samples.some((s) => s.name.startsWith("worker_registry_rpc_duration_seconds") && s.labels.method === "HeartbeatStream")).toBe(false);

    expect(valueOf(samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(valueOf(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("keeps counters monotonic across scrapes: a second scrape neither doubles nor resets them", async () => {
    const before = valueOf(await scrape(), "worker_registry_heartbeats_total")!;
    expect(valueOf(await scrape(), "worker_registry_heartbeats_total")).toBe(before);
    const [someone] = (await client.call("discoverWorkers", { filter: { capabilities: ["metrics"] } })).workers;
    await client.call("heartbeat", { workerId: someone.id });
    expect(valueOf(await scrape(), "worker_registry_heartbeats_total")).toBe(before + 1);
  });

  it("counts workers by rotation state, which add up to the fleet as the health tiers do", async () => {
    const before = await scrape();
    const fleet = ["healthy", "degraded", "unhealthy"].reduce((sum, health) => sum + valueOf(before, "worker_registry_workers", { health })!, 0);
    expect(valueOf(before, "worker_registry_workers_by_state", { state: "active" })).toBe(fleet);
    const [someone] = (await client.call("discoverWorkers", { filter: { capabilities: ["metrics"] } })).workers;
    await client.call("cordonWorker", { workerId: someone.id });
    try {
      const after = await scrape();
      expect(valueOf(after, "worker_registry_workers_by_state", { state: "active" })).toBe(fleet - 1);
      expect(valueOf(after, "worker_registry_workers_by_state", { state: "cordoned" })).toBe(1);
      expect(valueOf(after, "worker_registry_workers_by_state", { state: "draining" })).toBe(0);
    } finally {
      await client.call("uncordonWorker", { workerId: someone.id });
    }
  });

  it("answers with Prometheus's content type, 404 on other paths and 405 on other methods", async () => {
    const ok = await fetch(url("/metrics"));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    await ok.text();
    expect((await fetch(url("/other"))).status).toBe(404);
    expect((await fetch(url("/"))).status).toBe(404);
    const post = await fetch(url("/metrics"), { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
  });

  it("starts no metrics endpoint unless a port is given", async () => {
    const plain = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    try {
      expect(plain.metricsPort).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});

describe("parseServeArgs --metrics-port", () => {
  it("reads the flag and REGISTRY_METRICS_PORT, the flag winning", () => {
    expect(parseServeArgs(["--metrics-port", "9464"], { REGISTRY_METRICS_PORT: "9100" })).toEqual({ metricsPort: 9464 });
    expect(parseServeArgs([], { REGISTRY_METRICS_PORT: "0" })).toEqual({ metricsPort: 0 });
    expect(parseServeArgs([], {})).toEqual({});
  });

  it("names the flag or variable at fault", () => {
    expect(() => parseServeArgs(["--metrics-port", "http"], {})).toThrow(/^--metrics-port: invalid port "http": must be 0 to 65535/);
    expect(() => parseServeArgs([], { REGISTRY_METRICS_PORT: "70000" })).toThrow(/^REGISTRY_METRICS_PORT: invalid port/);
  });

  it("is listed in the help", () => {
    expect(serveUsage()).toMatch(/--metrics-port\s+REGISTRY_METRICS_PORT\s+port of the Prometheus endpoint/);
  });
});
