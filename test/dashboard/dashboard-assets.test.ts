import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadDashboardAssets } from "../../src/dashboard/dashboard-assets.js";
import { tempDirs } from "../support/temp-dir.js";

describe("loadDashboardAssets", () => {
  const dirs = tempDirs();
  afterAll(() => dirs.cleanup());

  it("serves every page, module and style of the folder with its type, and nothing else that lies there", () => {
    const dir = dirs.make();
    for (const name of ["index.html", "dashboard.js", "table.js", "dashboard.css", "tsconfig.json", "notes.md"]) writeFileSync(join(dir, name), name);
    const assets = loadDashboardAssets(dir);
    expect(Object.fromEntries([...assets].map(([name, asset]) => [name, asset.contentType]))).toEqual({
      "dashboard.css": "text/css; charset=utf-8",
      "dashboard.js": "text/javascript; charset=utf-8",
      "index.html": "text/html; charset=utf-8",
      "table.js": "text/javascript; charset=utf-8",
    });
    expect(assets.get("table.js")!.body.toString()).toBe("table.js");
    expect(assets.get("table.js")!.etag).not.toBe(assets.get("dashboard.js")!.etag);
  });

  it("fails at start-up, naming the folder, when the page or the folder is missing", () => {
    const dir = dirs.make();
    writeFileSync(join(dir, "dashboard.js"), "");
    expect(() => loadDashboardAssets(dir)).toThrow(`dashboard asset index.html is missing from ${dir}`);
    expect(() => loadDashboardAssets(join(dir, "nowhere"))).toThrow(`dashboard assets cannot be read from ${join(dir, "nowhere")}`);
  });
});
