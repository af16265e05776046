import fs from "node:fs";
import path from "node:path";

/** The first 12 hex digits of the commit checked out at `root` (read from .git, no git binary needed), or "unknown". */
export function gitCommit(root: string): string {
  try {
    const head = fs.readFileSync(path.join(root, ".git", "HEAD"), "utf8").trim();
    if (!head.startsWith("ref: ")) return head.slice(0, 12);
    const ref = head.slice(5);
    const file = path.join(root, ".git", ref);
    if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim().slice(0, 12);
    const packed = fs.readFileSync(path.join(root, ".git", "packed-refs"), "utf8");
    return packed.split("\n").find((line) => line.endsWith(` ${ref}`))?.slice(0, 12) ?? "unknown";
  } catch {
    return "unknown";
  }
}
