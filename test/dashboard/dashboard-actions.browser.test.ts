import { join } from "node:path";
import type { Page } from "playwright-core";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryServer } from "../../src/app.js";
import { createDashboardRoutes } from "../../src/dashboard/dashboard-routes.js";
import { silentLogger } from "../../src/domain/logger.js";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import { startMetricsServer } from "../../src/metrics/metrics-server.js";
import { createTestRegistry } from "../support/registry-fixture.js";
import { tempDirs } from "../support/temp-dir.js";
import { ARTIFACTS_DIR, useChromium } from "./chromium.js";
import { TokenClient } from "./token-client.js";
import { startSecuredServer } from "../support/secured-server.js";

// The functions below run in the page; this file is compiled without the DOM's types.
declare const document: any;

const ORCHESTRATOR = "orchestrator-token-for-the-dashboard-buttons";
const ADMIN = "admin-token-for-the-dashboard-buttons";

/** What a row of the table shows, read in one evaluation (rows are recycled as the view re-sorts). */
function rowOf(page: Page, id: string) {
  return page.evaluate((workerId) => {
    const row = document.querySelector(`tr.row[data-worker-id="${workerId}"]`);
    if (row === null) return null;
    const cell = (name: string) => row.querySelector(`td[data-col="${name}"]`);
    return {
      state: cell("state").dataset.state as string,
      stateText: cell("state").textContent as string,
      stateTitle: cell("state").title as string,
      version: cell("version").textContent as string,
      labels: cell("labels").textContent as string,
      buttons: [...cell("actions").querySelectorAll("button")].map((b: any) => b.textContent as string),
      actionsShown: getComputedStyleOf(cell("actions")) !== "none",
    };
    function getComputedStyleOf(node: any): string {
      return (globalThis as any).getComputedStyle(node).display;
    }
  }, id);
}

async function waitForRow(page: Page, id: string, shows: (row: NonNullable<Awaited<ReturnType<typeof rowOf>>>) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const row = await rowOf(page, id);
    if (row !== null && shows(row)) return;
    if (Date.now() > deadline) throw new Error(`row ${id}: ${what} not shown within 5 s; shows ${JSON.stringify(row)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the dashboard's worker actions in Chromium", () => {
  const chromium = useChromium();
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: TokenClient;
  let page: Page;
  const pageErrors: string[] = [];
  let eu: string;
  let us: string;

  beforeAll(async () => {
    if (chromium.browser === undefined) return;
    const dir = dirs.make();
    server = await startSecuredServer(dir, { orchestrator: ORCHESTRATOR, admin: ADMIN }, { metricsPort: 0 });
    client = new TokenClient(`127.0.0.1:${server.port}`, ADMIN);
    // A running task keeps a drained worker in the table, draining, until it finishes.
    eu = await client.busyWorker("eu-node", { zone: "eu-1", tier: "spot" }, "2026.11.3");
    us = await client.busyWorker("us-node");
    page = await chromium.browser.newPage({ viewport: { width: 1500, height: 900 } });
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`http://127.0.0.1:${server.metricsPort}/dashboard/`);
    await page.locator("#token-form").waitFor({ state: "visible", timeout: 5000 });
    await page.fill("#token-input", ORCHESTRATOR);
    await page.click("#token-form button");
    await waitForRow(page, eu, (row) => row.buttons.length > 0, "the buttons");
  });

  afterAll(async () => {
    await page?.close();
    client?.close();
    await server?.close();
    dirs.cleanup();
  });

  it("shows each worker's version, labels and state, and the buttons its state allows", async () => {
    expect(await rowOf(page, eu)).toEqual({
      state: "active",
      stateText: "active",
      stateTitle: "active: in rotation",
      version: "2026.11.3",
      labels: "tier=spot,zone=eu-1",
      buttons: ["Cordon", "Drain"],
      actionsShown: true,
    });
    expect(await rowOf(page, us)).toMatchObject({ version: "–", labels: "–", buttons: ["Cordon", "Drain"] });
    expect(await page.locator("th.actions-col").isVisible()).toBe(true);
  });

  it("cordons and uncordons with a click: the row changes through the feed", async () => {
    await page.click(`tr.row[data-worker-id="${eu}"] button[data-action="cordon"]`);
    await waitForRow(page, eu, (row) => row.state === "cordoned" && row.buttons.join() === "Uncordon,Drain", "cordoned");
    expect(await client.stateOf(eu)).toBe("cordoned");
    expect(await page.locator("#changes li:first-child").innerText()).toContain("cordoned");

    await page.click(`tr.row[data-worker-id="${eu}"] button[data-action="uncordon"]`);
    await waitForRow(page, eu, (row) => row.state === "active" && row.buttons.join() === "Cordon,Drain", "active again");
    expect(await page.locator("#changes li:first-child").innerText()).toContain("uncordoned");
    expect(await page.locator("#action-error").isHidden()).toBe(true);
  });

  it("drains only once the operator confirms, and then offers no action on the worker", async () => {
    const dialogs: string[] = [];
    page.once("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    await page.click(`tr.row[data-worker-id="${us}"] button[data-action="drain"]`);
    await expect.poll(() => dialogs.length).toBe(1);
    expect(dialogs[0]).toContain(`Drain ${us} on us-node?`);
    expect(await client.stateOf(us)).toBe("active");

    page.once("dialog", (dialog) => void dialog.accept());
    await page.click(`tr.row[data-worker-id="${us}"] button[data-action="drain"]`);
    await waitForRow(page, us, (row) => row.state === "draining" && row.buttons.length === 0, "draining");
    const row = await rowOf(page, us);
    expect(row!.stateTitle).toMatch(/^draining: removed once idle, at the latest /);
    expect(await client.stateOf(us)).toBe("draining");
    expect(await page.locator("#changes li:first-child").innerText()).toContain("draining");
    await page.screenshot({ path: join(ARTIFACTS_DIR, "dashboard-actions.png") });

    // Its task done, the registry removes it: the page says why.
    await client.call("updateTaskCount", { workerId: us, delta: -1 });
    await expect.poll(() => rowOf(page, us), { timeout: 5000 }).toBeNull();
    expect(await page.locator("#changes li:first-child").innerText()).toContain("left (drained)");
  });

  it("sorts by state, the workers furthest out of rotation first", async () => {
    await client.call("cordonWorker", { workerId: eu });
    await waitForRow(page, eu, (row) => row.state === "cordoned", "cordoned");
    try {
      await page.click('th[data-sort="state"] button');
      // The click sorts at the next frame: wait for it, then read the rows it drew.
      await expect.poll(() => page.getAttribute('th[data-sort="state"]', "aria-sort"), { timeout: 5000 }).toBe("descending");
      await expect
        .poll(() => page.evaluate(() => (document.querySelector('tr.row td[data-col="state"]') as { dataset: Record<string, string> } | null)?.dataset["state"]), { timeout: 5000 })
        .toBe("cordoned");
    } finally {
      await client.call("uncordonWorker", { workerId: eu });
    }
  });

  it("says why the registry refused an action, in words", async () => {
    await page.route("**/api/workers/**", (route) =>
      route.fulfill({ status: 409, contentType: "application/json", body: JSON.stringify({ error: `worker ${eu} is draining` }) }),
    );
    try {
      await waitForRow(page, eu, (row) => row.buttons.join() === "Cordon,Drain", "back in rotation");
      await page.click(`tr.row[data-worker-id="${eu}"] button[data-action="cordon"]`);
      await page.locator("#action-error").waitFor({ state: "visible", timeout: 5000 });
      expect(await page.locator("#action-error").innerText()).toBe(`Could not cordon ${eu}: worker ${eu} is draining`);
      await waitForRow(page, eu, (row) => row.buttons.join() === "Cordon,Drain", "the buttons enabled again");
    } finally {
      await page.unroute("**/api/workers/**");
    }
    expect(pageErrors).toEqual([]);
  });
});

describe("the dashboard for an operator who may not act", () => {
  const chromium = useChromium();

  it("shows the state, the version and the labels, and no action column", async () => {
    const { registry, clock } = await createTestRegistry();
    const { id } = await registry.registerWorker({ nodeId: "read-only", capabilities: ["cpu"], maxConcurrentTasks: 2, labels: { zone: "eu-1" }, version: "v7" });
    const routes = createDashboardRoutes({
      registry,
      scoring: DEFAULT_SCORING,
      thresholds: { healthyThresholdMs: 600_000, degradedThresholdMs: 900_000, heartbeatIntervalMs: 300_000 },
      clock,
      log: silentLogger,
      actions: {
        registry,
        guard: {
          allowed: () => [],
          authorize: () => {
            throw new Error("the page must not ask");
          },
        },
      },
    });
    const metrics = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
    const page = await chromium.browser!.newPage();
    try {
      const permissions = page.waitForResponse((response) => response.url().endsWith("/api/permissions"));
      await page.goto(`http://127.0.0.1:${metrics.port}/dashboard/`);
      await waitForRow(page, id, (row) => row.version === "v7", "the worker");
      expect(await (await permissions).json()).toEqual({ actions: [] });
      await page.evaluate(() => new Promise((done) => (globalThis as any).requestAnimationFrame(() => (globalThis as any).requestAnimationFrame(done))));
      expect(await rowOf(page, id)).toMatchObject({ state: "active", labels: "zone=eu-1", buttons: [], actionsShown: false });
      expect(await page.locator("th.actions-col").isVisible()).toBe(false);
    } finally {
      await page.close();
      await metrics.close();
      await registry.close();
    }
  });
});
