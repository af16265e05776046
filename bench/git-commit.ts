import fs from "node:fs";
import path from "node:path";

/**
 * The first 12 hex digits of the commit checked out at `root` (read from .git, no git binary needed), or "unknown".
 * In a linked worktree `.git` is a file naming the worktree's own directory (`gitdir: …`), which holds HEAD, while the
 * refs are in the repository's common directory (named by its `commondir` file).
 */
export function gitCommit(root: string): string {
  try {
    let gitDir = path.join(root, ".git");
    if (fs.statSync(gitDir).isFile()) gitDir = path.resolve(root, fs.readFileSync(gitDir, "utf8").trim().replace(/^gitdir: /, ""));
    const commonFile = path.join(gitDir, "commondir");
    const commonDir = fs.existsSync(commonFile) ? path.resolve(gitDir, fs.readFileSync(commonFile, "utf8").trim()) : gitDir;
    const head = fs.readFileSync(path.join(gitDir, "HEAD"), "utf8").trim();
    if (!head.startsWith("ref: ")) return head.slice(0, 12);
    const ref = head.slice(5);
    for (const dir of [gitDir, commonDir]) {
      const file = path.join(dir, ref);
      if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim().slice(0, 12);
    }
    const packed = fs.readFileSync(path.join(commonDir, "packed-refs"), "utf8");
    return packed.split("\n").find((line) => line.endsWith(` ${ref}`))?.slice(0, 12) ?? "unknown";
  } catch {
    return "unknown";
  }
}
