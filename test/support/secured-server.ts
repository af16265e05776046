import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startRegistryServer, type RegistryServer, type ServeOptions } from "../../src/app.js";

/**
 * A registry on 127.0.0.1 (a free port) with authentication on: a tokens
 * file in `dir` holding `tokens` (role to token), its SQLite file beside it.
 * `options` adds to or overrides the rest (a metrics port, registry options).
 */
export function startSecuredServer(dir: string, tokens: Readonly<Record<string, string>>, options: Partial<ServeOptions> = {}): Promise<RegistryServer> {
  const tokensFile = join(dir, "tokens");
  writeFileSync(
    tokensFile,
    Object.entries(tokens)
      .map(([role, token]) => `${role} ${token}\n`)
      .join(""),
  );
  return startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dir, "registry.db"), logLevel: "silent", security: { tokensFile }, ...options });
}
