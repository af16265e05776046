import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** One file of the page, ready to serve. */
export interface DashboardAsset {
  readonly contentType: string;
  readonly body: Buffer;
  /** A strong ETag of the body. */
  readonly etag: string;
}

/** The page's files by name: `index.html`, `dashboard.js`, `dashboard.css`. */
export type DashboardAssets = ReadonlyMap<string, DashboardAsset>;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  "index.html": "text/html; charset=utf-8",
  "dashboard.js": "text/javascript; charset=utf-8",
  "dashboard.css": "text/css; charset=utf-8",
};

/**
 * Where the page's files are: `src/dashboard/assets/`. The build is `tsc`
 * alone and copies no other file, so from `dist/src/dashboard/` the files
 * are read from the source tree beside `dist/`; under vitest this module
 * runs from `src/dashboard/` and finds them next to itself.
 */
export function defaultAssetsDirectory(): string {
  const candidates = [new URL("./assets/", import.meta.url), new URL("../../../src/dashboard/assets/", import.meta.url)];
  const found = candidates.find((url) => existsSync(new URL("index.html", url)));
  return fileURLToPath(found ?? candidates[0]!);
}

/**
 * Reads the page's files once, at start-up, so a missing file is a
 * start-up error rather than a broken page on the first visit.
 * @throws Error naming the folder and the file when one is missing.
 */
export function loadDashboardAssets(directory = defaultAssetsDirectory()): DashboardAssets {
  const assets = new Map<string, DashboardAsset>();
  for (const [name, contentType] of Object.entries(CONTENT_TYPES)) {
    let body: Buffer;
    try {
      body = readFileSync(join(directory, name));
    } catch (error) {
      throw new Error(`dashboard asset ${name} is missing from ${directory}: the page is served from src/dashboard/assets`, { cause: error });
    }
    assets.set(name, { contentType, body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
  }
  return assets;
}
