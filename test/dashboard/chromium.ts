import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, beforeEach } from "vitest";

/** Debian's chromium package; playwright-core drives it and never downloads a browser of its own. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Where browser tests keep their screenshots and measurements (git-ignored). */
export const ARTIFACTS_DIR = fileURLToPath(new URL("./artifacts/", import.meta.url));

/**
 * Launches headless Chromium.
 * @throws an error saying how to install it when it is missing: the browser
 *   tests must fail, not skip, on a machine without it.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}; the dashboard's browser tests need it. ` +
        "Install Debian's package: apt-get update && apt-get install -y chromium (.ci/run does this).",
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Launches Chromium for the tests of a describe block, and closes it after
 * them. When it cannot be launched, every test fails with the reason (vitest
 * would report the tests of a failed beforeAll as skipped; a missing browser
 * must read as a failure). The block's own beforeAll should return early
 * while `browser` is undefined.
 */
export function useChromium(): { readonly browser: Browser | undefined } {
  let browser: Browser | undefined;
  let failure: unknown;
  beforeAll(async () => {
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    try {
      browser = await launchChromium();
    } catch (error) {
      failure = error;
    }
  });
  beforeEach(() => {
    if (failure !== undefined) throw failure;
  });
  afterAll(async () => {
    await browser?.close();
  });
  return {
    get browser() {
      return browser;
    },
  };
}
