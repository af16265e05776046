import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { FAST_ARGS, ReplicaSet, waitUntil } from "../replicas/replica-set.js";
import { tempDirs } from "../support/temp-dir.js";
import { useChromium } from "./chromium.js";

// The function below runs in the page; this file is compiled without the DOM's types.
declare const document: any;

const sharedUrl = inject("postgresUrl");

/** The page's line about the registry process it shows, as the operator reads it. */
const shownReplica = (): string => document.querySelector("#replica")?.textContent ?? "";

/** A lag as the page writes it (formatting.js's formatDuration, below a minute). */
const lagText = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`);

/** Waits until the page's replica line passes `check`, or fails showing the last line read. */
async function expectShown(page: Page, what: string, check: (line: string) => boolean, timeoutMs = 6000): Promise<string> {
  let line = "";
  await waitUntil(
    `the page to show ${what}`,
    async () => {
      line = await page.evaluate(shownReplica);
      return check(line);
    },
    timeoutMs,
    50,
  ).catch(() => {
    throw new Error(`the page's replica line read "${line}", waiting for ${what}`);
  });
  return line;
}

describe("the dashboard says which registry process it shows", () => {
  const chromium = useChromium();
  const pages: Page[] = [];
  const pageErrors: string[] = [];

  async function open(metricsPort: number): Promise<Page> {
    const page = await chromium.browser!.newPage();
    pages.push(page);
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`http://127.0.0.1:${metricsPort}/dashboard/`);
    return page;
  }

  afterEach(async () => {
    for (const page of pages.splice(0)) await page.close();
    expect(pageErrors.splice(0)).toEqual([]);
  });

  describe("on SQLite: one process, which leads", () => {
    const dirs = tempDirs();
    let server: RegistryServer;
    beforeAll(async () => {
      server = await startRegistryServer({
        host: "127.0.0.1",
        port: 0,
        metricsPort: 0,
        dbPath: join(dirs.make(), "registry.db"),
        logLevel: "silent",
        replication: { replicaId: "solo" },
      });
    });
    afterAll(async () => {
      await server?.close();
      dirs.cleanup();
    });

    it("names the process and says it leads, with no replication to speak of", async () => {
      const page = await open(server.metricsPort!);
      await expectShown(page, "Replica solo · leading · SQLite, one process", (line) => line === "Replica solo · leading · SQLite, one process");
    });
  });

  describe.skipIf(sharedUrl === "")("on PostgreSQL: one replica among three", () => {
    let set: ReplicaSet;
    beforeAll(async () => {
      if (chromium.browser === undefined) return;
      set = await ReplicaSet.start(3, { sharedUrl, args: [...FAST_ARGS, "--metrics-port", "0"] });
    }, 30_000);
    afterAll(async () => {
      await set?.dispose();
    });

    /** The dashboard's port of replica i, from its "dashboard serving" log line. */
    const metricsPort = (i: number) => Number(set.server(i).logs.find((entry) => entry.msg === "dashboard serving")!.port);

    /** Replica i's own GetRegistryStats: who it is, who it says leads, its lag in ms. */
    async function statsOf(i: number): Promise<{ id: string; leading: boolean; leader: string; lagMs: number }> {
      const { replica } = await set.client(i).call("getRegistryStats");
      const lag = replica.replicationLag ?? { seconds: 0, nanos: 0 };
      return { id: replica.replicaId, leading: replica.leading, leader: replica.leaderId, lagMs: Number(lag.seconds) * 1000 + lag.nanos / 1e6 };
    }

    it("names the replica it shows, the one that leads, and the lag that replica reports", { timeout: 30_000 }, async () => {
      const leader = await waitUntil("a leader", () => set.leader(), 10_000, 50);
      const viewed = (leader + 1) % 3;
      const writer = (leader + 2) % 3;
      const page = await open(metricsPort(viewed));
      await expectShown(page, `Replica replica-${viewed} · leader replica-${leader} · replication lag …`, (line) =>
        line.startsWith(`Replica replica-${viewed} · leader replica-${leader} · replication lag `),
      );

      // A change written by another replica: the viewed one applies it from the log, and its lag is no longer 0.
      await set.client(writer).call("registerWorker", { nodeId: "written-elsewhere", capabilities: ["replicas"], maxConcurrentTasks: 1 });
      await waitUntil("the viewed replica to apply a change made elsewhere", async () => (await statsOf(viewed)).lagMs > 0, 5000, 20);
      // The page shows the lag the replica reports: read again each time, since a later change made elsewhere (the
      // leader's health transitions) moves it, and the page follows once a second.
      let expected = "";
      let shown = "";
      await waitUntil(
        "the page to show the replica's own figures",
        async () => {
          const stats = await statsOf(viewed);
          expect(stats).toMatchObject({ id: `replica-${viewed}`, leading: false, leader: `replica-${leader}` });
          expected = `Replica replica-${viewed} · leader replica-${leader} · replication lag ${lagText(stats.lagMs)}`;
          shown = await page.evaluate(shownReplica);
          return shown === expected;
        },
        6000,
        50,
      ).catch(() => expect(shown).toBe(expected));
    });

    it("on the leader's page says it leads; when the leader dies, another replica's page names the new one", { timeout: 30_000 }, async () => {
      const leader = await waitUntil("a leader", () => set.leader(), 10_000, 50);
      const viewed = (leader + 1) % 3;
      const leaderPage = await open(metricsPort(leader));
      const viewedPage = await open(metricsPort(viewed));
      await expectShown(leaderPage, `Replica replica-${leader} · leading · …`, (line) => line.startsWith(`Replica replica-${leader} · leading · replication lag `));
      await expectShown(viewedPage, `… leader replica-${leader} …`, (line) => line.startsWith(`Replica replica-${viewed} · leader replica-${leader} · `));

      await set.stopReplica(leader, "SIGKILL");
      const next = await waitUntil("another replica to take the lease", async () => {
        const now = await set.leader();
        return now !== undefined && now !== leader ? now : undefined;
      }, 15_000, 50);
      const expected = next === viewed ? `Replica replica-${viewed} · leading · ` : `Replica replica-${viewed} · leader replica-${next} · `;
      await expectShown(viewedPage, `${expected}…`, (line) => line.startsWith(expected));
    });
  });
});
