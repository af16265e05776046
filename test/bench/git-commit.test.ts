import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gitCommit } from "../../bench/git-commit.js";
import { tempDirs } from "../support/temp-dir.js";

const A = "a".repeat(40);
const B = "b".repeat(40);

describe("the commit a benchmark run names", () => {
  const dirs = tempDirs();
  afterAll(() => dirs.cleanup());

  function write(file: string, text: string): void {
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, text);
  }

  it("reads a checkout's branch, loose or packed", () => {
    const root = dirs.make();
    write(join(root, ".git", "HEAD"), "ref: refs/heads/main\n");
    write(join(root, ".git", "refs", "heads", "main"), `${A}\n`);
    expect(gitCommit(root)).toBe("a".repeat(12));
    const packed = dirs.make();
    write(join(packed, ".git", "HEAD"), "ref: refs/heads/main\n");
    write(join(packed, ".git", "packed-refs"), `# pack-refs with: peeled\n${B} refs/heads/main\n`);
    expect(gitCommit(packed)).toBe("b".repeat(12));
  });

  it("reads a linked worktree's branch from the repository's common directory (git worktree add)", () => {
    const repo = dirs.make();
    const worktree = dirs.make();
    const gitDir = join(repo, ".git", "worktrees", "wt");
    write(join(worktree, ".git"), `gitdir: ${gitDir}\n`);
    write(join(gitDir, "HEAD"), "ref: refs/heads/feature\n");
    write(join(gitDir, "commondir"), "../..\n");
    write(join(repo, ".git", "refs", "heads", "feature"), `${B}\n`);
    expect(gitCommit(worktree)).toBe("b".repeat(12));
  });

  it("says unknown outside a checkout", () => {
    expect(gitCommit(dirs.make())).toBe("unknown");
  });
});
