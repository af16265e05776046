import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** One file of the page, ready to serve. */
export interface DashboardAsset {
  readonly contentType: string;
  readonly body: Buffer;
  /** A strong ETag of the body. */
  readonly etag: string;
}

/** The page's files by name: `index.html`, `dashboard.css`, and its modules (`dashboard.js` and what it imports). */
export type DashboardAssets = ReadonlyMap<string, DashboardAsset>;

/**
 * The kinds of file served, by extension. JavaScript must be served as such:
 * browsers refuse a module of another type (and the policy's nosniff).
 */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** The page itself: without it there is nothing to serve. */
const PAGE = "index.html";

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
 * Reads the page's files once, at start-up: every .html, .js and .css file
 * of the folder (a new module of the page needs no change here; the
 * folder's tsconfig.json is not served). Reading at start-up makes a missing
 * folder or page a start-up error rather than a broken page on the first visit.
 * @throws Error naming the folder when it cannot be read or has no index.html.
 */
export function loadDashboardAssets(directory = defaultAssetsDirectory()): DashboardAssets {
  const assets = new Map<string, DashboardAsset>();
  try {
    for (const name of readdirSync(directory).sort()) {
      const contentType = CONTENT_TYPES[extname(name)];
      if (contentType === undefined) continue;
      const body = readFileSync(join(directory, name));
      assets.set(name, { contentType, body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
    }
  } catch (error) {
    throw new Error(`dashboard assets cannot be read from ${directory}: the page is served from src/dashboard/assets`, { cause: error });
  }
  if (!assets.has(PAGE)) throw new Error(`dashboard asset ${PAGE} is missing from ${directory}: the page is served from src/dashboard/assets`);
  return assets;
}
