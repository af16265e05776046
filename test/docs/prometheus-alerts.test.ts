import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportedSeries } from "../support/exported-series.js";
import { seriesIn } from "../support/promql.js";
import { describeWithPromtool, promtool } from "../support/promtool.js";
import { tempDirs } from "../support/temp-dir.js";

const ALERTS = fileURLToPath(new URL("../../docs/prometheus/alerts.yml", import.meta.url));
const ALERT_TESTS = fileURLToPath(new URL("../../docs/prometheus/alerts.test.yml", import.meta.url));

/** One alerting rule, as far as these tests read it. */
interface AlertRule {
  readonly name: string;
  readonly expr: string;
  readonly summary: string | undefined;
}

/**
 * The alerting rules of a rule file written as alerts.yml is: one `- alert:`
 * per rule, `expr` and `summary` inline or as block scalars. Not a YAML
 * parser; promtool reads the file for real below.
 */
function alertRules(text: string): AlertRule[] {
  const lines = text.split("\n");
  const starts = lines.flatMap((line, i) => (/^\s*- alert: /.test(line) ? [i] : []));
  return starts.map((start, n) => {
    const block = lines.slice(start, starts[n + 1] ?? lines.length);
    return { name: /- alert: (\w+)/.exec(block[0]!)![1]!, expr: scalar(block, "expr") ?? "", summary: scalar(block, "summary") };
  });
}

/** The value of `key` in a block of YAML lines: inline, or a folded (>) or literal (|) block scalar. */
function scalar(block: readonly string[], key: string): string | undefined {
  const at = block.findIndex((line) => new RegExp(`^\\s*${key}:`).test(line));
  if (at < 0) return undefined;
  const line = block[at]!;
  const value = line.slice(line.indexOf(":") + 1).trim();
  if (!/^[>|]-?$/.test(value)) return value.replace(/^(['"])(.*)\1$/, "$2");
  const indent = line.search(/\S/);
  const body: string[] = [];
  for (const next of block.slice(at + 1)) {
    if (next.trim() !== "" && next.search(/\S/) <= indent) break;
    body.push(next.trim());
  }
  return body.join(value.startsWith(">") ? " " : "\n").trim();
}

/** For each alert the test file names: whether it has a case where it fires and one where it must not. */
function testedCases(text: string): Map<string, { fires: boolean; silent: boolean }> {
  const cases = new Map<string, { fires: boolean; silent: boolean }>();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const name = /^\s*alertname: (\w+)/.exec(line)?.[1];
    if (name === undefined) return;
    const entry = cases.get(name) ?? { fires: false, silent: false };
    if (/exp_alerts: \[\]/.test(lines[i + 1] ?? "")) entry.silent = true;
    else if (/exp_alerts:\s*$/.test(lines[i + 1] ?? "")) entry.fires = true;
    cases.set(name, entry);
  });
  return cases;
}

const rules = alertRules(readFileSync(ALERTS, "utf8"));

describe("docs/prometheus/alerts.yml", () => {
  let exported: Set<string>;
  beforeAll(async () => {
    exported = await exportedSeries();
  });

  it("has the alerts an operator starts from, each with a summary that says what to do", () => {
    expect(rules.map((r) => r.name).sort()).toEqual([
      "WorkerRegistryEvictionPaused",
      "WorkerRegistryNoHeartbeats",
      "WorkerRegistryNoLeader",
      "WorkerRegistryReplicaBehind",
      "WorkerRegistryStoreUnavailable",
      "WorkerRegistryUnhealthyShareHigh",
      "WorkerRegistryWatchersDropped",
    ]);
    for (const rule of rules) {
      expect(rule.summary, rule.name).toBeDefined();
      // What to do is an imperative or a command: "Check ...", "run `worker-registry ...`", "List them with ...".
      expect(rule.summary, rule.name).toMatch(/\b(Check|Free|Find|List|run|restart|raise)\b/);
    }
  });

  it("queries only series the server exports", () => {
    expect(exported.size).toBeGreaterThan(20);
    for (const rule of rules) {
      const series = seriesIn(rule.expr);
      expect(series.length, `${rule.name}: ${rule.expr}`).toBeGreaterThan(0);
      expect(series.filter((name) => !exported.has(name)), rule.name).toEqual([]);
    }
  });

  it("has a unit test of each alert firing, and of it staying silent", () => {
    const cases = testedCases(readFileSync(ALERT_TESTS, "utf8"));
    for (const rule of rules) expect(cases.get(rule.name), rule.name).toEqual({ fires: true, silent: true });
  });

  describeWithPromtool("promtool", () => {
    const dirs = tempDirs();
    afterAll(() => dirs.cleanup());

    it("check rules: the file is valid", () => {
      const run = promtool(["check", "rules", ALERTS]);
      expect(run.output).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(run.status).toBe(0);
    });

    it("test rules: every alert fires on its synthetic series, with its summary, and stays silent where it must", () => {
      const run = promtool(["test", "rules", ALERT_TESTS]);
      expect(run.output).toContain("SUCCESS");
      expect(run.status).toBe(0);
    });

    it("test rules fails when an alert is changed, so the tests above can fail", () => {
      const dir = dirs.make();
      copyFileSync(ALERT_TESTS, join(dir, "alerts.test.yml"));
      const alerts = readFileSync(ALERTS, "utf8");
      expect(alerts).toContain("/ sum without (health) (worker_registry_workers) > 0.2");
      writeFileSync(join(dir, "alerts.yml"), alerts.replace("/ sum without (health) (worker_registry_workers) > 0.2", "/ sum without (health) (worker_registry_workers) > 0.5"));
      const run = promtool(["test", "rules", join(dir, "alerts.test.yml")]);
      expect(run.output).toContain("alertname: WorkerRegistryUnhealthyShareHigh");
      expect(run.status).not.toBe(0);
    });
  });
});
