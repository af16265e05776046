import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import type { RegistryServer } from "../../src/app.js";
import { workerCommand } from "../../src/cli/fleet-commands.js";
import { lifecycleCommand, type LifecycleAction, type LifecycleCommandIo } from "../../src/cli/lifecycle-commands.js";
import { listCommand } from "../../src/cli/list-command.js";
import { TestRegistry } from "../client/registry-server.js";
import { CLI_PATH } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import { startSecuredServer } from "../support/secured-server.js";

const MISSING = "worker-1767268800123-abc123xyz";

let registry: TestRegistry;
let client: WorkerRegistryClient;
/** Each test registers its own workers under its own `case` label, so that selections never reach another test's. */
let caseNumber = 0;

beforeAll(async () => {
  registry = await TestRegistry.start();
  client = new WorkerRegistryClient({ address: registry.address });
});

afterAll(async () => {
  client?.close();
  await registry?.dispose();
});

/**
 * Registers workers for one test, each with a running task so that a drain
 * leaves it draining (an idle one is removed at once). Returns their ids, in
 * the order given, and the selector of this test's workers.
 */
async function fleet(...workers: { node: string; labels?: Record<string, string>; version?: string }[]): Promise<{ ids: string[]; only: string }> {
  const label = `case-${++caseNumber}`;
  const ids: string[] = [];
  for (const worker of workers) {
    const { id } = await client.registerWorker({
      nodeId: `${label}-${worker.node}`,
      capabilities: ["coder"],
      maxConcurrentTasks: 2,
      labels: { case: label, ...worker.labels },
      ...(worker.version === undefined ? {} : { version: worker.version }),
    });
    await client.updateTaskCount(id, 1);
    ids.push(id);
  }
  return { ids, only: `case=${label}` };
}

async function stateOf(id: string): Promise<string> {
  return (await client.getWorker(id)).state;
}

/** Runs a command in-process, as the CLI would, with its output captured. */
async function run(action: LifecycleAction, argv: string[], io: Omit<LifecycleCommandIo, "stdout" | "stderr"> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await lifecycleCommand(action, [...argv, "--address", registry.address], {
    env: {},
    interactive: false,
    ...io,
    stdout: (text) => out.push(text),
    stderr: (text) => err.push(text),
  });
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

describe("worker-registry cordon, uncordon and drain by id", () => {
  it("cordons several workers, prints a line for each and a summary, and uncordons them", async () => {
    const { ids } = await fleet({ node: "a" }, { node: "b" });
    const [a, b] = ids as [string, string];
    const cordoned = await run("cordon", [a, b]);
    expect(cordoned.stderr).toBe("");
    expect(cordoned.code).toBe(0);
    expect(cordoned.stdout.split("\n")).toEqual([
      `cordoned ${a} (node case-${caseNumber}-a)`,
      `cordoned ${b} (node case-${caseNumber}-b)`,
      "2 of 2 workers cordoned",
    ]);
    expect([await stateOf(a), await stateOf(b)]).toEqual(["cordoned", "cordoned"]);

    const uncordoned = await run("uncordon", [a, b]);
    expect(uncordoned.code).toBe(0);
    expect(uncordoned.stdout.split("\n").at(-1)).toBe("2 of 2 workers uncordoned");
    expect([await stateOf(a), await stateOf(b)]).toEqual(["active", "active"]);
  });

  it("drains with --grace, printing each worker's deadline", async () => {
    const { ids } = await fleet({ node: "a" });
    const [a] = ids as [string];
    const before = Date.now();
    const { code, stdout, stderr } = await run("drain", [a, "--grace", "5m"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [line, summary] = stdout.split("\n");
    expect(line).toMatch(new RegExp(`^draining ${a} \\(node case-\\d+-a\\) until (\\S+)$`));
    const deadline = Date.parse(line!.split(" until ")[1]!);
    expect(deadline - before).toBeGreaterThanOrEqual(5 * 60_000 - 1000);
    expect(deadline - Date.now()).toBeLessThanOrEqual(5 * 60_000);
    expect(summary).toBe("1 of 1 worker draining");
    expect(await stateOf(a)).toBe("draining");
  });

  it("exits 1 naming each worker that failed, and still acts on the others", async () => {
    const { ids } = await fleet({ node: "a" }, { node: "b" });
    const [a, b] = ids as [string, string];
    expect((await run("drain", [b])).code).toBe(0);
    const { code, stdout, stderr } = await run("cordon", [MISSING, a, b]);
    expect(code).toBe(1);
    const errors = stderr.split("\n");
    expect(errors[0]).toBe(`worker-registry: cannot cordon ${MISSING}: worker ${MISSING} not found`);
    // A draining worker stays draining: the registry's reason, naming the worker.
    expect(errors[1]).toMatch(new RegExp(`^worker-registry: cannot cordon ${b}: .*${b}.*drain`));
    expect(errors).toHaveLength(2);
    expect(stdout.split("\n")).toEqual([`cordoned ${a} (node case-${caseNumber}-a)`, "1 of 3 workers cordoned, 2 failed"]);
    expect([await stateOf(a), await stateOf(b)]).toEqual(["cordoned", "draining"]);
  });

  it("acts on each worker once, however often it is named", async () => {
    const { ids } = await fleet({ node: "a" });
    const { code, stdout } = await run("cordon", [ids[0]!, ids[0]!]);
    expect(code).toBe(0);
    expect(stdout.split("\n").at(-1)).toBe("1 of 1 worker cordoned");
  });
});

describe("worker-registry cordon, uncordon and drain by selector", () => {
  it("lists the selection with its versions, states and labels, then acts on exactly it with --yes", async () => {
    const { ids, only } = await fleet(
      { node: "eu-a", labels: { zone: "eu-1", tier: "spot" }, version: "v1" },
      { node: "eu-b", labels: { zone: "eu-1" }, version: "v2" },
      { node: "us-a", labels: { zone: "us-1" }, version: "v1" },
    );
    const [euA, euB, usA] = ids as [string, string, string];
    const { code, stdout, stderr } = await run("cordon", ["--selector", `${only},zone=eu-1`, "--yes"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.split("\n");
    expect(lines[0]).toBe(`2 workers match selector "${only},zone=eu-1":`);
    expect(lines[1]).toMatch(/^ {2}WORKER\s+NODE\s+VERSION\s+STATE\s+HEALTH\s+TASKS\s+LABELS$/);
    const rows = lines.slice(2, 4);
    // Ordered by id, as the registry lists them; the labels as a selector that matches them.
    const [first, second] = euA < euB ? [euA, euB] : [euB, euA];
    expect(rows[0]).toContain(first);
    expect(rows[1]).toContain(second);
    const rowOf = (id: string) => rows.find((row) => row.includes(id))!;
    expect(rowOf(euA)).toMatch(new RegExp(`^  ${euA}\\s+case-\\d+-eu-a\\s+v1\\s+active\\s+healthy\\s+1/2\\s+${only},tier=spot,zone=eu-1$`));
    expect(rowOf(euB)).toMatch(new RegExp(`^  ${euB}\\s+case-\\d+-eu-b\\s+v2\\s+active\\s+healthy\\s+1/2\\s+${only},zone=eu-1$`));
    expect(lines.slice(4)).toEqual([
      `cordoned ${first} (node ${first === euA ? `case-${caseNumber}-eu-a` : `case-${caseNumber}-eu-b`})`,
      `cordoned ${second} (node ${second === euA ? `case-${caseNumber}-eu-a` : `case-${caseNumber}-eu-b`})`,
      "2 of 2 workers cordoned",
    ]);
    expect([await stateOf(euA), await stateOf(euB), await stateOf(usA)]).toEqual(["cordoned", "cordoned", "active"]);
  });

  it("selects by --version, any of several, and together with --selector", async () => {
    const { ids, only } = await fleet({ node: "a", version: "v1" }, { node: "b", version: "v2" }, { node: "c", version: "v3" });
    const [v1, v2, v3] = ids as [string, string, string];
    const { code, stdout } = await run("drain", ["--selector", only, "--version", "v1", "--version", "v2", "--grace", "1h", "--yes"]);
    expect(code).toBe(0);
    expect(stdout.split("\n")[0]).toBe(`2 workers match selector "${only}" and version "v1" or "v2":`);
    expect(stdout.split("\n").at(-1)).toBe("2 of 2 workers draining");
    expect([await stateOf(v1), await stateOf(v2), await stateOf(v3)]).toEqual(["draining", "draining", "active"]);
  });

  it("refuses a selection without --yes when stdin is not a terminal: exit 2, nothing changed", async () => {
    const { ids, only } = await fleet({ node: "a" }, { node: "b" });
    const { code, stdout, stderr } = await run("drain", ["--selector", only]);
    expect(code).toBe(2);
    expect(stdout).toContain(`2 workers match selector "${only}":`);
    expect(stderr).toBe("worker-registry: refusing to drain 2 workers without confirmation: stdin is not a terminal; pass --yes to confirm");
    expect([await stateOf(ids[0]!), await stateOf(ids[1]!)]).toEqual(["active", "active"]);
  });

  it("asks on a terminal, and acts only on yes", async () => {
    const { ids, only } = await fleet({ node: "a" }, { node: "b" });
    const questions: string[] = [];
    const declined = await run("drain", ["--selector", only, "--grace", "90s"], {
      interactive: true,
      confirm: async (question) => (questions.push(question), false),
    });
    expect(declined.code).toBe(1);
    expect(declined.stderr).toBe("worker-registry: not confirmed; nothing changed");
    expect(questions).toEqual(["Drain these 2 workers with a grace of 90s? [y/N] "]);
    expect([await stateOf(ids[0]!), await stateOf(ids[1]!)]).toEqual(["active", "active"]);

    const accepted = await run("cordon", ["--selector", only], { interactive: true, confirm: async () => true });
    expect(accepted.code).toBe(0);
    expect(accepted.stdout.split("\n").at(-1)).toBe("2 of 2 workers cordoned");
    expect([await stateOf(ids[0]!), await stateOf(ids[1]!)]).toEqual(["cordoned", "cordoned"]);
  });

  it("says when nothing matches, and exits 0 without asking", async () => {
    const { code, stdout, stderr } = await run("cordon", ["--selector", "zone=nowhere"], { confirm: async () => expect.fail("asked") });
    expect([code, stdout, stderr]).toEqual([0, 'no worker matches selector "zone=nowhere"', ""]);
  });

  it("exits 2 with the registry's reason for a selector it cannot parse", async () => {
    const { code, stderr } = await run("cordon", ["--selector", "zone in (eu-1", "--yes"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^worker-registry: .*label_selector/);
    expect(stderr).toMatch(/position|column|offset|at \d+/);
  });

  it("exits 1 naming the workers that failed: uncordoning draining workers", async () => {
    const { ids, only } = await fleet({ node: "a" });
    expect((await run("drain", [ids[0]!])).code).toBe(0);
    const { code, stdout, stderr } = await run("uncordon", ["--selector", only, "--yes"]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/\s+draining\s+/);
    expect(stderr).toMatch(new RegExp(`^worker-registry: cannot uncordon ${ids[0]}: `));
    expect(stdout.split("\n").at(-1)).toBe("0 of 1 worker uncordoned, 1 failed");
  });
});

describe("--json", () => {
  it("prints the workers acted on and the failures, the selection's list going to stderr", async () => {
    const { ids, only } = await fleet({ node: "a" });
    const { code, stdout, stderr } = await run("cordon", ["--selector", only, "--yes", "--json"]);
    expect(code).toBe(0);
    expect(stderr).toContain(`1 worker matches selector "${only}":`);
    const parsed = JSON.parse(stdout);
    expect(parsed).toMatchObject({ address: registry.address, action: "cordon", failed: [] });
    expect(parsed.done.map((w: { id: string; state: string }) => [w.id, w.state])).toEqual([[ids[0], "cordoned"]]);

    const failed = await run("drain", [MISSING, "--json"]);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toEqual({ address: registry.address, action: "drain", done: [], failed: [{ id: MISSING, error: `worker ${MISSING} not found` }] });
  });
});

describe("worker-registry list and worker", () => {
  it("list shows each worker's version, state and labels, selects by --selector and --version, and counts the workers out of rotation", async () => {
    const { ids, only } = await fleet({ node: "a", labels: { zone: "eu-1" }, version: "v1" }, { node: "b", version: "v2" });
    expect((await run("cordon", [ids[0]!])).code).toBe(0);
    const out: string[] = [];
    const code = await listCommand(["--selector", only, "--version", "v1", "--address", registry.address], { env: {}, stdout: (text) => out.push(text), stderr: (text) => out.push(text) });
    expect(code).toBe(0);
    const lines = out.join("\n").split("\n");
    expect(lines[0]).toMatch(/^NODE\s+WORKER\s+VERSION\s+STATE\s+HEALTH\s+TASKS\s+SUCCESS\s+LAST HEARTBEAT\s+CAPABILITIES\s+LABELS$/);
    expect(lines[1]).toMatch(new RegExp(`^case-\\d+-a\\s+${ids[0]}\\s+v1\\s+cordoned\\s+healthy\\s+1/2\\s+.*coder\\s+${only},zone=eu-1$`));
    expect(lines.at(-1)).toBe(`1 worker: 1 healthy, 0 degraded, 0 unhealthy; 1 cordoned, 0 draining (from ${registry.address})`);
  });

  it("worker shows the version, the labels, and when a draining worker leaves at the latest", async () => {
    const { ids, only } = await fleet({ node: "a", labels: { zone: "eu-1", tier: "spot" }, version: "2026.11.3" });
    const { stdout: drained } = await run("drain", [ids[0]!, "--grace", "1h"]);
    const deadline = drained.split("\n")[0]!.split(" until ")[1]!;
    const out: string[] = [];
    expect(await workerCommand([ids[0]!, "--address", registry.address], { env: {}, stdout: (text) => out.push(text), stderr: (text) => out.push(text) })).toBe(0);
    const lines = out.join("\n").split("\n");
    expect(lines.slice(2, 6)).toEqual([
      "Version         2026.11.3",
      `Labels          ${only},tier=spot,zone=eu-1`,
      "Capabilities    coder",
      `State           draining (removed once idle, at the latest ${deadline})`,
    ]);
  });
});

describe("usage", () => {
  it.each([
    [[], /name the workers to cordon by id, or select them with --selector, --version, --capability or --health/],
    [["worker-1", "--selector", "zone=eu-1"], /give worker ids or filter flags, not both/],
    [["--health", "sick"], /--health "sick": must be healthy, degraded or unhealthy/],
    [["worker-1", "--grace", "5m"], /--grace is for drain only/],
    [["--selector", ""], /--selector is empty: it would select every worker/],
    [["--version", ""], /--version must not be empty/],
    [["--bogus"], /bogus/],
  ])("cordon %j exits 2 with the usage", async (argv, message) => {
    const { code, stderr } = await run("cordon", argv);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).toContain("usage: worker-registry cordon ID...");
  });

  it("refuses a --grace without a unit", async () => {
    const { code, stderr } = await run("drain", ["worker-1", "--grace", "300"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^--grace: invalid duration "300"/);
  });

  it("prints the usage for --help", async () => {
    const { code, stdout } = await run("drain", ["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("usage: worker-registry drain ID... [--grace DURATION]");
    expect(stdout).toContain("--selector SEL");
    expect(stdout).toContain("--yes, -y");
    expect(stdout).toContain("$REGISTRY_TOKEN");
  });

  it("exits 1 when the registry cannot be reached, naming it, and tries no further worker", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await lifecycleCommand("cordon", ["worker-1", "worker-2", "--address", "127.0.0.1:1"], {
      env: {},
      stdout: (text) => out.push(text),
      stderr: (text) => err.push(text),
    });
    expect(code).toBe(1);
    expect(err[0]).toMatch(/^worker-registry: cannot cordon worker-1: cannot reach the registry at 127\.0\.0\.1:1: nothing listens there/);
    expect(err[1]).toBe("worker-registry: stopped; 1 more worker not tried");
    expect(out.at(-1)).toBe("0 of 2 workers cordoned, 2 failed");
  });
});

describe("the worker-registry executable", () => {
  /** Runs the built CLI with stdin a pipe (not a terminal), as a script or CI job would. */
  function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" (npm test does) before these tests`);
    const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, REGISTRY_TOKEN: "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
  }

  it("refuses a selection with stdin not a terminal (exit 2), and drains by id", async () => {
    const { ids, only } = await fleet({ node: "a" });
    const refused = await cli(["drain", "--selector", only, "--address", registry.address]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("stdin is not a terminal; pass --yes to confirm");
    expect(await stateOf(ids[0]!)).toBe("active");

    const drained = await cli(["drain", ids[0]!, "--address", registry.address]);
    expect([drained.code, drained.stderr]).toEqual([0, ""]);
    expect(drained.stdout).toContain(`draining ${ids[0]}`);
    expect(await stateOf(ids[0]!)).toBe("draining");
  });

  it("lists the commands in its help", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    for (const command of ["cordon <id>...", "uncordon <id>...", "drain <id>..."]) expect(stdout).toContain(command);
  });
});

describe("with tokens", () => {
  const dirs = tempDirs();
  const ORCHESTRATOR = "orchestrator-token-for-the-lifecycle-test";
  const WORKER_ROLE = "worker-role-token-for-the-lifecycle-test";
  let server: RegistryServer;
  let workerId: string;

  beforeAll(async () => {
    const dir = dirs.make();
    server = await startSecuredServer(dir, { orchestrator: ORCHESTRATOR, worker: WORKER_ROLE });
    const registrar = new WorkerRegistryClient({ address: `127.0.0.1:${server.port}`, token: WORKER_ROLE });
    workerId = (await registrar.registerWorker({ nodeId: "secured", capabilities: ["coder"], maxConcurrentTasks: 1 })).id;
    registrar.close();
  });
  afterAll(async () => {
    await server?.close();
    dirs.cleanup();
  });

  async function runWith(token: string, argv: string[]) {
    let stdout = "";
    let stderr = "";
    const code = await lifecycleCommand("cordon", [...argv, "--address", `127.0.0.1:${server.port}`], {
      env: { REGISTRY_TOKEN: token },
      interactive: false,
      stdout: (text) => (stdout += `${text}\n`),
      stderr: (text) => (stderr += `${text}\n`),
    });
    return { code, stdout, stderr };
  }

  it("acts with an orchestrator token from REGISTRY_TOKEN, and names the worker a worker-role token may not cordon", async () => {
    const refused = await runWith(WORKER_ROLE, [workerId]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^worker-registry: cannot cordon ${workerId}: cordoning workers needs an orchestrator or admin token, and the token in REGISTRY_TOKEN is not one`));
    expect(refused.stderr).not.toContain(WORKER_ROLE);

    const done = await runWith(ORCHESTRATOR, [workerId]);
    expect([done.code, done.stderr]).toEqual([0, ""]);
    expect(done.stdout).toContain(`cordoned ${workerId} (node secured)`);
  });

  it("stops at once when the token is refused", async () => {
    const { code, stderr } = await runWith("not-a-valid-token-at-all", [workerId, MISSING]);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      new RegExp(`cannot cordon ${workerId}: the registry at \\S+ refused the token in REGISTRY_TOKEN \\(invalid token\\): cordoning workers needs an orchestrator or admin token`),
    );
    expect(stderr).toContain("stopped; 1 more worker not tried");
  });
});
