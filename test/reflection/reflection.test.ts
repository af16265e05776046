/**
 * Every RPC of the server, called from a client that is not the project's own
 * and knows only what server reflection tells it: test/reflection/reflect.py,
 * a grpcurl-like CLI on Debian's Python gRPC stack (python3-grpcio,
 * python3-protobuf) with no generated code. It builds requests from reflected
 * descriptors and JSON, as grpcurl does.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";

const PYTHON = "/usr/bin/python3";
const REFLECT_PY = fileURLToPath(new URL("./reflect.py", import.meta.url));
const SERVICE = "sentinel.registry.v1.WorkerRegistryService";
const HEALTH = "grpc.health.v1.Health";

type Json = any;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a Python command; never rejects, the exit code is in the result. */
function runPython(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(PYTHON, [...args], { timeout: 30_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr: stderr || (error && typeof error.code !== "number" ? String(error) : "") });
    });
  });
}

let server: RegistryServer;
let dir: string;

/** Runs `reflect.py <server address> ...args`. */
function reflect(...args: string[]): Promise<Run> {
  return runPython([REFLECT_PY, server.address, ...args]);
}

/** Calls a unary method with a JSON request; expects success and returns the parsed JSON response. */
async function call(method: string, request: unknown, ...flags: string[]): Promise<Json> {
  const run = await reflect(...flags, "call", method.includes("/") ? method : `${SERVICE}/${method}`, JSON.stringify(request));
  expect(run, `${method} failed:\n${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
  return JSON.parse(run.stdout);
}

/** Calls a unary method that must fail; returns the status name and details that reflect.py printed. */
async function callFailing(method: string, request: unknown): Promise<{ status: string; details: string }> {
  const run = await reflect("call", `${SERVICE}/${method}`, JSON.stringify(request));
  expect(run.code, `${method} should have failed:\n${run.stdout}${run.stderr}`).toBe(1);
  const match = /^ERROR ([A-Z_]+): (.*)$/s.exec(run.stdout.trim());
  expect(match, `unexpected output: ${run.stdout}${run.stderr}`).not.toBeNull();
  return { status: match![1]!, details: match![2]! };
}

const register = async (nodeId: string, capabilities: string[], maxConcurrentTasks: number): Promise<Json> =>
  (await call("RegisterWorker", { nodeId, capabilities, max_concurrent_tasks: maxConcurrentTasks })).worker;

beforeAll(async () => {
  const probe = await runPython(["-c", "import grpc, google.protobuf.descriptor_pool, google.protobuf.json_format"]);
  if (probe.code !== 0) {
    throw new Error(
      `${PYTHON} cannot import grpc / google.protobuf, which the reflection test needs: ` +
        `install the Debian packages python3-grpcio and python3-protobuf (apt-get install python3-grpcio python3-protobuf).\n${probe.stderr}`,
    );
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "reflection-test-"));
  server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: path.join(dir, "registry.db"), logLevel: "silent" });
});

afterAll(async () => {
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("server reflection, seen by a foreign client", () => {
  it("lists the registry and health services", async () => {
    const run = await reflect("list");
    expect(run.code, run.stderr).toBe(0);
    const services = run.stdout.trim().split("\n");
    expect(services).toContain(SERVICE);
    expect(services).toContain(HEALTH);
  });

  it("lists the reflection service itself, as grpc-go and grpc-java do", async () => {
    const run = await reflect("list");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim().split("\n")).toEqual(
      expect.arrayContaining(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]),
    );
  });

  it("describes the registry service: every method, HeartbeatStream bidirectional, WatchWorkers server-streaming", async () => {
    const run = await reflect("describe", SERVICE);
    expect(run.code, run.stderr).toBe(0);
    const rpcs = [...run.stdout.matchAll(/rpc (\w+) \( (stream )?\.([\w.]+) \) returns \( (stream )?\.([\w.]+) \);/g)].map(
      ([, name, clientStream, input, serverStream, output]) => ({ name, input, output, clientStreaming: !!clientStream, serverStreaming: !!serverStream }),
    );
    const methods = [
      "RegisterWorker",
      "UnregisterWorker",
      "Heartbeat",
      "HeartbeatStream",
      "UpdateTaskCount",
      "RecordTaskCompletion",
      "GetWorker",
      "DiscoverWorkers",
      "GetWorkersForLoadBalancing",
      "GetRegistryStats",
      "AcquireWorker",
      "ReleaseWorker",
      "WatchWorkers",
      "ResumeEviction",
      "CordonWorker",
      "UncordonWorker",
      "DrainWorker",
    ];
    expect(rpcs.map((rpc) => rpc.name).sort()).toEqual([...methods].sort());
    for (const rpc of rpcs) {
      expect(rpc.input).toBe(`sentinel.registry.v1.${rpc.name}Request`);
      expect(rpc.output).toBe(`sentinel.registry.v1.${rpc.name}Response`);
      expect({ name: rpc.name, client: rpc.clientStreaming, server: rpc.serverStreaming }).toEqual({
        name: rpc.name,
        client: rpc.name === "HeartbeatStream",
        server: rpc.name === "HeartbeatStream" || rpc.name === "WatchWorkers",
      });
    }
  });

  it("describes a message, with types from imported files", async () => {
    const run = await reflect("describe", "sentinel.registry.v1.Worker");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("repeated string capabilities = 3;");
    expect(run.stdout).toContain(".sentinel.registry.v1.HealthStatus health_status = 8;");
    expect(run.stdout).toContain(".google.protobuf.Timestamp last_heartbeat_at = 10;");
  });
});

describe("every RPC, called with JSON through reflection", () => {
  let worker: Json; // gpu + cpu, 4 slots: the one the calls below act on
  let cpuOnly: Json;
  let bigGpu: Json;

  it("RegisterWorker returns the new worker with its id", async () => {
    worker = await register("node-a", ["gpu", "cpu"], 4);
    expect(worker).toMatchObject({
      node_id: "node-a",
      capabilities: ["gpu", "cpu"],
      max_concurrent_tasks: 4,
      available_capacity: 4,
      health_status: "HEALTH_STATUS_HEALTHY",
    });
    expect(worker.id).toMatch(/^worker-\d+-[a-z0-9]+$/);
    expect(worker.current_tasks ?? 0).toBe(0);
    expect(Date.parse(worker.registered_at)).not.toBeNaN();
    cpuOnly = await register("node-b", ["cpu"], 2);
    bigGpu = await register("node-c", ["gpu"], 10);
    expect(new Set([worker.id, cpuOnly.id, bigGpu.id]).size).toBe(3);
  });

  it("Heartbeat marks the worker alive now", async () => {
    const before = Date.parse(worker.last_heartbeat_at);
    const { worker: beaten } = await call("Heartbeat", { worker_id: worker.id });
    expect(beaten.id).toBe(worker.id);
    expect(beaten.health_status).toBe("HEALTH_STATUS_HEALTHY");
    expect(Date.parse(beaten.last_heartbeat_at)).toBeGreaterThanOrEqual(before);
  });

  it("UpdateTaskCount +1 takes a slot", async () => {
    const { worker: updated } = await call("UpdateTaskCount", { workerId: worker.id, delta: 1 });
    expect(updated).toMatchObject({ id: worker.id, current_tasks: 1, available_capacity: 3, max_concurrent_tasks: 4 });
  });

  it("RecordTaskCompletion adds to the metrics without changing current_tasks", async () => {
    const { worker: recorded } = await call("RecordTaskCompletion", { worker_id: worker.id, success: true, duration_ms: 500 });
    expect(recorded).toMatchObject({ id: worker.id, current_tasks: 1, success_rate: 1 });
    expect(recorded.metrics).toMatchObject({ tasks_completed: "1", average_task_duration_ms: 500 }); // uint64 is a JSON string
    expect(recorded.metrics.tasks_failed_count ?? "0").toBe("0");
  });

  it("GetWorker returns the worker as it is now", async () => {
    const { worker: got } = await call("GetWorker", { worker_id: worker.id });
    expect(got).toMatchObject({
      id: worker.id,
      node_id: "node-a",
      capabilities: ["gpu", "cpu"],
      current_tasks: 1,
      available_capacity: 3,
      success_rate: 1,
      health_status: "HEALTH_STATUS_HEALTHY",
      metrics: { tasks_completed: "1" },
    });
  });

  it("DiscoverWorkers filters by capability", async () => {
    const gpu = await call("DiscoverWorkers", { filter: { capabilities: ["gpu"] } });
    expect(gpu.workers.map((w: Json) => w.id).sort()).toEqual([worker.id, bigGpu.id].sort());
    expect(gpu.next_page_token ?? "").toBe("");
    const both = await call("DiscoverWorkers", { filter: { capabilities: ["gpu", "cpu"] } });
    expect(both.workers.map((w: Json) => w.id)).toEqual([worker.id]);
    const all = await call("DiscoverWorkers", {});
    expect(all.workers.map((w: Json) => w.id)).toEqual([worker.id, cpuOnly.id, bigGpu.id].sort()); // ordered by id
    const healthyCpu = await call("DiscoverWorkers", { filter: { capabilities: ["cpu"], health_statuses: ["HEALTH_STATUS_HEALTHY"] } });
    expect(healthyCpu.workers.map((w: Json) => w.id).sort()).toEqual([worker.id, cpuOnly.id].sort());
  });

  it("GetWorkersForLoadBalancing ranks by priority, best first", async () => {
    const { workers: ranked } = await call("GetWorkersForLoadBalancing", { filter: { capabilities: ["gpu"] } });
    expect(ranked.map((r: Json) => r.worker.id).sort()).toEqual([worker.id, bigGpu.id].sort());
    for (const r of ranked) {
      expect(typeof r.priority).toBe("number");
      expect(r.priority).toBeGreaterThan(0);
      // The documented default weights: 0.5 capacity + 0.3 success + 0.2 speed.
      expect(r.priority).toBeCloseTo(0.5 * r.capacity_score + 0.3 * r.success_score + 0.2 * r.speed_score, 9);
    }
    const priorities = ranked.map((r: Json) => r.priority);
    expect(priorities).toEqual([...priorities].sort((a, b) => b - a));
    // node-a: 3/4 free, 1 success in 500 ms: 0.375 + 0.3 + 0.2; node-c: all free, neutral priors: 0.5 + 0.15 + 0.1.
    expect(ranked[0]).toMatchObject({ worker: { id: worker.id }, capacity_score: 0.75, success_score: 1, speed_score: 1 });
    expect(ranked[0].priority).toBeCloseTo(0.875, 9);
    expect(ranked[1]).toMatchObject({ worker: { id: bigGpu.id }, capacity_score: 1, success_score: 0.5, speed_score: 0.5 });
    expect(ranked[1].priority).toBeCloseTo(0.75, 9);

    const limited = await call("GetWorkersForLoadBalancing", { filter: { capabilities: ["gpu"] }, limit: 1 });
    expect(limited.workers.map((r: Json) => r.worker.id)).toEqual([worker.id]);
  });

  it("GetRegistryStats counts the fleet", async () => {
    const stats = await call("GetRegistryStats", {}, "--emit-defaults");
    expect(stats).toMatchObject({
      total_workers: 3,
      healthy_workers: 3,
      degraded_workers: 0,
      unhealthy_workers: 0,
      total_capacity: "16", // int64 and uint64 are JSON strings
      used_capacity: "1",
      available_capacity: "15",
      tasks_completed: "1",
      tasks_failed: "0",
      success_rate: 1,
    });
    expect(Date.parse(stats.server_time)).not.toBeNaN();
  });

  it("ResumeEviction answers whether eviction was paused, with the status after", async () => {
    const answer = await call("ResumeEviction", {}, "--emit-defaults");
    expect(answer).toMatchObject({ was_paused: false, eviction: { paused: false, reason: "" } });
  });

  it("HeartbeatStream answers each heartbeat, echoing its sequence, then ends OK on half-close", async () => {
    const stream = `${SERVICE}/HeartbeatStream`;
    const run = await reflect(
      "stream",
      stream,
      JSON.stringify({ worker_id: worker.id, sequence: 1 }),
      JSON.stringify({ workerId: worker.id, sequence: 2 }),
    );
    expect(run.code, `${run.stdout}${run.stderr}`).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    const replies = lines.slice(0, 2).map((line) => JSON.parse(line));
    replies.forEach((reply, index) => {
      expect(reply).toMatchObject({ worker_id: worker.id, sequence: index + 1, health_status: "HEALTH_STATUS_HEALTHY" });
      expect(Date.parse(reply.server_time)).not.toBeNaN();
      expect(reply.next_heartbeat_interval).toMatch(/^\d+(\.\d+)?s$/); // a google.protobuf.Duration in JSON
    });
    expect(lines[2]).toBe("STATUS OK");
  });

  it("UnregisterWorker removes the worker; GetWorker then says NOT_FOUND", async () => {
    expect(await call("UnregisterWorker", { worker_id: worker.id })).toEqual({});
    const { status, details } = await callFailing("GetWorker", { worker_id: worker.id });
    expect(status).toBe("NOT_FOUND");
    expect(details).toContain("not found");
    expect(details).toContain(worker.id);
  });
});

describe("errors, through the same client", () => {
  it("RegisterWorker with max_concurrent_tasks 0 is INVALID_ARGUMENT naming the field", async () => {
    const { status, details } = await callFailing("RegisterWorker", { node_id: "node-x", capabilities: ["cpu"], max_concurrent_tasks: 0 });
    expect(status).toBe("INVALID_ARGUMENT");
    expect(details).toContain("max_concurrent_tasks");
  });

  it("UpdateTaskCount -5 on a fresh worker is FAILED_PRECONDITION and changes nothing", async () => {
    const fresh = await register("node-fresh", ["cpu"], 3);
    const { status } = await callFailing("UpdateTaskCount", { worker_id: fresh.id, delta: -5 });
    expect(status).toBe("FAILED_PRECONDITION");
    const { worker: after } = await call("GetWorker", { worker_id: fresh.id });
    expect(after.current_tasks ?? 0).toBe(0);
    expect(after.available_capacity).toBe(3);
  });

  it("grpc.health.v1.Health/Check reports SERVING for the server and the registry service", async () => {
    expect(await call(`${HEALTH}/Check`, {})).toEqual({ status: "SERVING" });
    expect(await call(`${HEALTH}/Check`, { service: SERVICE })).toEqual({ status: "SERVING" });
  });
});
