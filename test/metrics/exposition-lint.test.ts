import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition, valueOf, type Sample } from "../support/exposition.js";
import { describeWithPromtool, promtool } from "../support/promtool.js";
import { tempDirs } from "../support/temp-dir.js";
import { startServedRegistry, type ServedRegistry } from "./served-traffic.js";

/** Every label a worker_registry_* series may carry: each takes a fixed set of values. */
const LABEL_NAMES = new Set(["health", "state", "usage", "kind", "reason", "outcome", "result", "method", "code", "le", "version", "commit", "node_version"]);

describe("the exposition of a registry that served every kind of call", () => {
  const dirs = tempDirs();
  let served: ServedRegistry;
  let text: string;
  let samples: Sample[];

  beforeAll(async () => {
    served = await startServedRegistry(dirs.make());
    text = await served.scrape();
    samples = parseExposition(text);
  }, 30_000);
  afterAll(async () => {
    await served?.close();
    dirs.cleanup();
  });

  it("counts what happened: registrations, removals by reason, completions by outcome, acquisitions by result, refusals by method and code", () => {
    expect(valueOf(samples, "worker_registry_registrations_total")).toBe(4);
    expect(valueOf(samples, "worker_registry_removals_total", { reason: "replaced" })).toBe(1);
    expect(valueOf(samples, "worker_registry_removals_total", { reason: "unregistered" })).toBe(1);
    expect(valueOf(samples, "worker_registry_task_completions_total", { outcome: "failed" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "worker_registry_acquisitions_total", { result: "acquired" })).toBe(2);
    expect(valueOf(samples, "worker_registry_acquisitions_total", { result: "no_match" })).toBe(1);
    const refused = (method: string, code: string) => valueOf(samples, "worker_registry_refused_calls_total", { method, code });
    expect(refused("GetRegistryStats", "UNAUTHENTICATED")).toBe(1);
    expect(refused("UnregisterWorker", "PERMISSION_DENIED")).toBe(1);
    expect(refused("AcquireWorker", "RESOURCE_EXHAUSTED")).toBe(1);
    expect(refused("GetWorker", "NOT_FOUND")).toBe(1);
    expect(refused("grpc.health.v1.Health/Check", "UNAUTHENTICATED")).toBe(1);
    expect(valueOf(samples, "worker_registry_open_streams", { kind: "heartbeat" })).toBe(2);
    expect(valueOf(samples, "worker_registry_heartbeat_handling_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "worker_registry_watch_delivery_lag_seconds_count")).toBeGreaterThanOrEqual(1);
  });

  it("keeps label cardinality bounded: known label names, methods from the contract, status names, and no id, node or token anywhere", () => {
    const ours = samples.filter((s) => s.name.startsWith("worker_registry_"));
    const labelNames = new Set(ours.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].filter((name) => !LABEL_NAMES.has(name))).toEqual([]);
    const codes = new Set(Object.keys(status).filter((key) => Number.isNaN(Number(key))));
    for (const sample of ours) {
      if (sample.labels.code !== undefined) expect(codes, sample.labels.code).toContain(sample.labels.code);
      if (sample.labels.method !== undefined) expect(sample.labels.method).toMatch(/^([A-Z][A-Za-z]+|grpc\.[a-z0-9.]+\.[A-Za-z]+\/[A-Za-z]+|other)$/);
    }
    expect(served.secrets.length).toBeGreaterThanOrEqual(10);
    expect(served.secrets.filter((secret) => text.includes(secret))).toEqual([]);
  });

  describeWithPromtool("promtool check metrics", () => {
    it("finds nothing to report in the live exposition", () => {
      const run = promtool(["check", "metrics"], text);
      expect(run.output).toBe("");
      expect(run.status).toBe(0);
    });

    it("does report what it should, so the check above can fail: a gauge named like a counter", () => {
      const run = promtool(["check", "metrics"], "# HELP misnamed_total A gauge.\n# TYPE misnamed_total gauge\nmisnamed_total 1\n");
      expect(run.output).toContain('misnamed_total non-counter metrics should not have "_total" suffix');
      expect(run.status).not.toBe(0);
    });
  });
});
