/**
 * Plaintext without tokens is refused off loopback unless the operator
 * accepts the risk (`insecure` / `--insecure`); the refusal says why.
 * Servers bound to 0.0.0.0 here are closed at once, and only 127.0.0.1 is ever
 * connected to.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startRegistryServer, type ServeOptions } from "../../src/app.js";
import { ConfigError } from "../../src/domain/errors.js";
import { CLI_PATH } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import { codeName, makeCertificates, SecClient } from "./support.js";

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const TOKEN = "admin-token-0123456789abcdef";

function tokensFile(): string {
  const file = join(dirs.make("registry-cfg-"), "tokens.txt");
  writeFileSync(file, `admin ${TOKEN}\n`);
  return file;
}

const base = (host: string): ServeOptions => ({ host, port: 0, dbPath: join(dirs.make("registry-cfg-"), "registry.db"), logLevel: "silent" });

/** Starts a server, checks it answers on 127.0.0.1, and closes it. */
async function startsAndServes(options: ServeOptions, token?: string): Promise<string> {
  const server = await startRegistryServer(options);
  try {
    const client = new SecClient(`127.0.0.1:${server.port}`);
    try {
      return codeName((await client.outcome("getRegistryStats", {}, token, 5000)).code);
    } finally {
      client.close();
    }
  } finally {
    await server.close();
  }
}

/** Starts a server and closes it at once, without connecting. */
async function startsAndCloses(options: ServeOptions): Promise<void> {
  const server = await startRegistryServer(options);
  await server.close();
}

describe("binding a non-loopback address", () => {
  for (const host of ["0.0.0.0", "::", "192.0.2.10", "registry.example.com", "127.0.0.1.nip.io", "LOCALHOST"]) {
    it(`refuses ${host} in plaintext without tokens, saying why and what to do`, async () => {
      const attempt = startRegistryServer(base(host));
      await expect(attempt).rejects.toBeInstanceOf(ConfigError);
      const message = await attempt.then(
        () => "",
        (e: Error) => e.message,
      );
      expect(message).toContain(host);
      expect(message).toMatch(/plaintext/);
      expect(message).toMatch(/tokens/);
      // Why: anyone who can reach it could take over the fleet.
      expect(message).toMatch(/anyone who can reach it/);
      // What to do instead.
      expect(message).toMatch(/--tls-cert/);
      expect(message).toMatch(/--tokens-file/);
      expect(message).toMatch(/--insecure/);
    });
  }

  it("starts on 0.0.0.0 with insecure: true", async () => {
    await startsAndCloses({ ...base("0.0.0.0"), security: { insecure: true } });
  });

  it("starts on 0.0.0.0 with a tokens file, and requires the token (checked over 127.0.0.1)", async () => {
    const file = tokensFile();
    expect(await startsAndServes({ ...base("0.0.0.0"), security: { tokensFile: file } })).toBe("UNAUTHENTICATED");
    expect(await startsAndServes({ ...base("0.0.0.0"), security: { tokensFile: file } }, TOKEN)).toBe("OK");
  });

  it("starts on 0.0.0.0 with TLS", async () => {
    const certs = makeCertificates(dirs.make("registry-cfg-tls-"));
    await startsAndCloses({ ...base("0.0.0.0"), security: { tlsCertFile: certs.serverCert, tlsKeyFile: certs.serverKey } });
  });

  it("keeps the defaults easy on loopback: 127.0.0.1, localhost and ::1 start in plaintext without tokens", async () => {
    expect(await startsAndServes(base("127.0.0.1"))).toBe("OK");
    await startsAndCloses(base("localhost"));
    await startsAndCloses(base("::1"));
  });

  it("a broken tokens file is refused at start-up, naming the line", async () => {
    const file = join(dirs.make("registry-cfg-"), "tokens.txt");
    writeFileSync(file, `# ok\nadmin ${TOKEN}\nworker short\n`);
    await expect(startRegistryServer({ ...base("127.0.0.1"), security: { tokensFile: file } })).rejects.toThrow(/tokens\.txt:3: token too short/);
  });
});

describe("the CLI", () => {
  /** Runs `serve` with args; resolves with the exit code and output once it exits, or kills it after timeoutMs. */
  function runServe(args: string[], stopOnServing = false, timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string; served: boolean }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI_PATH, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      let served = false;
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
        if (!served && stdout.includes('"registry serving"')) {
          served = true;
          // "registry serving" is logged just before `serve` installs its SIGTERM handler: give it a moment.
          if (stopOnServing) setTimeout(() => child.kill("SIGTERM"), 300);
        }
      });
      child.stderr.on("data", (chunk) => (stderr += chunk));
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, served });
      });
    });
  }

  it("--host 0.0.0.0 without TLS or tokens exits non-zero, saying why on stderr", async () => {
    const run = await runServe(["--host", "0.0.0.0", "--port", "0", "--db", join(dirs.make(), "r.db")]);
    expect(run.served).toBe(false);
    expect(run.code).not.toBe(0);
    expect(run.code).not.toBeNull();
    expect(run.stderr).toMatch(/refusing to serve 0\.0\.0\.0 in plaintext without tokens/);
    expect(run.stderr).toMatch(/--insecure/);
  });

  it("--host 0.0.0.0 --insecure starts (and stops cleanly on SIGTERM)", async () => {
    const run = await runServe(["--host", "0.0.0.0", "--port", "0", "--insecure", "--db", join(dirs.make(), "r.db")], true);
    expect(run.served).toBe(true);
    expect(run.code).toBe(0);
  });

  it("--host 0.0.0.0 --tokens-file starts", async () => {
    const run = await runServe(["--host", "0.0.0.0", "--port", "0", "--tokens-file", tokensFile(), "--db", join(dirs.make(), "r.db")], true);
    expect(run.served).toBe(true);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"authentication":"1 role tokens"');
    expect(run.stdout).not.toContain(TOKEN);
  });
});
