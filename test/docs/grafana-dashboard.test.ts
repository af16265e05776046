import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportedSeries } from "../support/exported-series.js";
import { seriesIn, withoutGrafanaVariables } from "../support/promql.js";
import { describeWithPromtool, promtool } from "../support/promtool.js";
import { tempDirs } from "../support/temp-dir.js";

const DASHBOARD_FILE = new URL("../../docs/grafana/worker-registry.json", import.meta.url);

interface Target {
  readonly refId: string;
  readonly expr: string;
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly description?: string;
  readonly gridPos: { readonly h: number; readonly w: number; readonly x: number; readonly y: number };
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
interface Dashboard {
  readonly title: string;
  readonly uid: string;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: ReadonlyArray<{ readonly name: string; readonly type: string; readonly definition?: string }> };
}

/** Every panel, those inside collapsed rows included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

/** The queries of the dashboard: every panel target's, and the variables' (`label_values(SERIES, label)`, whose series is PromQL). */
function queries(dashboard: Dashboard): Array<{ readonly where: string; readonly expr: string }> {
  const fromPanels = allPanels(dashboard.panels).flatMap((panel) => (panel.targets ?? []).map((t) => ({ where: `${panel.title} ${t.refId}`, expr: t.expr })));
  const fromVariables = dashboard.templating.list
    .filter((variable) => variable.type === "query")
    .map((variable) => ({ where: `variable ${variable.name}`, expr: /^label_values\((.*),\s*\w+\)$/.exec(variable.definition ?? "")?.[1] ?? variable.definition ?? "" }));
  return [...fromPanels, ...fromVariables];
}

describe("docs/grafana/worker-registry.json", () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
  let exported: Set<string>;
  beforeAll(async () => {
    exported = await exportedSeries();
  });

  it("is a Grafana dashboard: titled, with unique panel ids, each panel placed, described, and querying with refIds", () => {
    expect(dashboard).toMatchObject({ title: "Worker registry", uid: "worker-registry" });
    const panels = allPanels(dashboard.panels);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const graphs = panels.filter((p) => p.type !== "row");
    expect(graphs.length).toBeGreaterThanOrEqual(15);
    for (const panel of graphs) {
      expect(panel.gridPos.w, panel.title).toBeGreaterThan(0);
      expect(panel.description, panel.title).toBeTruthy();
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.refId, panel.title).toMatch(/^[A-Z]$/);
    }
  });

  it("queries only series the server exports", () => {
    const all = queries(dashboard);
    expect(all.length).toBeGreaterThan(20);
    for (const { where, expr } of all) {
      const series = seriesIn(expr);
      expect(series.length, `${where}: ${expr}`).toBeGreaterThan(0);
      expect(series.filter((name) => !exported.has(name)), `${where}: ${expr}`).toEqual([]);
    }
  });

  it("shows the series an operator needs: every worker_registry_ family is on some panel", () => {
    const shown = new Set(queries(dashboard).flatMap(({ expr }) => seriesIn(expr)).map((name) => name.replace(/_(bucket|sum|count)$/, "")));
    const ours = [...exported].filter((name) => name.startsWith("worker_registry_") && !/_(bucket|sum|count)$/.test(name));
    // Watched through their alerts and GetRegistryStats rather than a panel of their own.
    const unshown = new Set(["worker_registry_eviction_resumes_at_timestamp_seconds", "worker_registry_eviction_pauses_total", "worker_registry_leadership_terms_total"]);
    expect(ours.filter((name) => !shown.has(name) && !unshown.has(name))).toEqual([]);
  });

  it("reads series names out of PromQL the way the checks above rely on", () => {
    expect(seriesIn('histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job="$job", code=~"OK|x"}[$__rate_interval])))')).toEqual(["a_bucket"]);
    expect(seriesIn("max(b{health=\"unhealthy\"}) / max(sum without (health) (c)) * on (job, instance) d > 1e3")).toEqual(["b", "c", "d"]);
  });

  describeWithPromtool("promtool", () => {
    const dirs = tempDirs();
    afterAll(() => dirs.cleanup());

    it("finds every panel query valid PromQL (checked as recording rules)", () => {
      const rules = queries(dashboard)
        .map(({ expr }, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(withoutGrafanaVariables(expr))}\n`)
        .join("");
      const file = join(dirs.make(), "dashboard-queries.yml");
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}`);
      const run = promtool(["check", "rules", file]);
      expect(run.output).toContain(`SUCCESS: ${queries(dashboard).length} rules found`);
      expect(run.status).toBe(0);
    });
  });
});
