import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { defaultText, envName, SERVE_SETTINGS } from "../../src/cli/serve-command.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

describe("the README", () => {
  it("documents every serve flag with its environment variable and default", () => {
    const missing = SERVE_SETTINGS.filter((s) => !readme.includes(`| \`--${s.flag}\` | \`${envName(s.flag)}\` | ${defaultText(s)} |`)).map((s) => s.flag);
    expect(missing).toEqual([]);
  });

  it("gives the two commands of the quick start: one installs and serves, one tests", () => {
    expect(readme).toContain("npm install && npm start");
    expect(readme).toContain("npm test");
  });
});
