import { Metadata } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { createLogger } from "../../src/log.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { useChromium } from "./chromium.js";

const ORCHESTRATOR_TOKEN = "orchestrator-token-for-the-dashboard-test";
const WORKER_TOKEN = "worker-role-token-for-the-dashboard-test";

describe("the dashboard with tokens configured", () => {
  const chromium = useChromium();
  const dirs = tempDirs();
  const logs: string[] = [];
  let server: RegistryServer;

  beforeAll(async () => {
    const dir = dirs.make();
    const tokensFile = join(dir, "tokens");
    writeFileSync(tokensFile, `orchestrator ${ORCHESTRATOR_TOKEN}\nworker ${WORKER_TOKEN}\n`);
    const sink = new PassThrough();
    sink.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      dbPath: join(dir, "registry.db"),
      logger: createLogger("debug", sink),
      security: { tokensFile },
    });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${WORKER_TOKEN}`);
    const register = client.grpc.registerWorker as unknown as (request: object, metadata: Metadata, callback: (error: Error | null) => void) => void;
    await new Promise<void>((resolve, reject) =>
      register.call(client.grpc, { nodeId: "secured-node", capabilities: ["coder"], maxConcurrentTasks: 2 }, metadata, (error) => (error ? reject(error) : resolve())),
    );
    client.close();
  });

  afterAll(async () => {
    await server?.close();
    dirs.cleanup();
  });

  it("asks for a token, refuses a worker-role one, shows the fleet with an orchestrator one, and never puts it in a URL or a log", async () => {
    const browser = chromium.browser!;
    const page = await browser.newPage();
    const urls: string[] = [];
    page.on("request", (request) => urls.push(request.url()));
    await page.goto(`http://127.0.0.1:${server.metricsPort}/dashboard/`);
    await page.locator("#token-form").waitFor({ state: "visible", timeout: 5000 });
    expect(await page.locator("body").innerText()).not.toContain("secured-node");

    await page.fill("#token-input", WORKER_TOKEN);
    await page.click("#token-form button");
    await page.locator("#token-form").waitFor({ state: "visible", timeout: 5000 });

    await page.fill("#token-input", ORCHESTRATOR_TOKEN);
    await page.click("#token-form button");
    await page.getByText("secured-node").first().waitFor({ timeout: 5000 });
    await page.close();

    for (const secret of [ORCHESTRATOR_TOKEN, WORKER_TOKEN]) {
      expect(urls.filter((url) => url.includes(secret))).toEqual([]);
      expect(logs.join("")).not.toContain(secret);
    }
    expect(urls.some((url) => url.endsWith("/dashboard/events"))).toBe(true);
  });
});

