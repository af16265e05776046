import { readFileSync } from "node:fs";
import { ConfigError } from "../domain/errors.js";
import { sha256Hex } from "../domain/worker-token.js";
import { ROLES, type Role } from "./roles.js";

/** A role token as the server keeps it: only its SHA-256. */
export interface RoleToken {
  readonly role: Role;
  /** Lowercase hex SHA-256 of the token. */
  readonly sha256: string;
}

const HASHED = /^sha256:([0-9a-fA-F]{64})$/;
const MIN_TOKEN_LENGTH = 16;

/**
 * Parses a tokens file: one `ROLE TOKEN` per line, where TOKEN may be written
 * `sha256:HEX` (the token's hash, so the file need not hold the secret); `#`
 * starts a comment (at the beginning of a line or after white space); blank
 * lines are ignored. Plain tokens are hashed at once
 * and never kept.
 * @throws ConfigError naming the line at fault (never echoing a token).
 */
export function parseTokenFile(text: string, source: string): RoleToken[] {
  const tokens: RoleToken[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    // A comment starts at a "#" at the beginning of a line or after white space, so a token may contain "#".
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const where = `${source}:${index + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 2) throw new ConfigError(`${where}: expected "ROLE TOKEN", got ${fields.length} fields`);
    const [role, token] = fields as [string, string];
    // Never echo the field: a line written "TOKEN ROLE" would put the token in an error message.
    if (!(ROLES as readonly string[]).includes(role)) throw new ConfigError(`${where}: the first field must be a role, one of ${ROLES.join(", ")}`);
    const hashed = HASHED.exec(token);
    if (hashed) tokens.push({ role: role as Role, sha256: hashed[1]!.toLowerCase() });
    else if (token.startsWith("sha256:")) throw new ConfigError(`${where}: a sha256: token must be 64 hex digits`);
    else if (token.length < MIN_TOKEN_LENGTH) throw new ConfigError(`${where}: token too short; use at least ${MIN_TOKEN_LENGTH} characters`);
    else tokens.push({ role: role as Role, sha256: sha256Hex(token) });
  });
  if (tokens.length === 0) throw new ConfigError(`${source}: no tokens; an empty tokens file would lock everyone out`);
  return tokens;
}

/** Reads and parses a tokens file. @throws ConfigError if it cannot be read or parsed. */
export function loadTokenFile(path: string): RoleToken[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read tokens file ${path}: ${(error as Error).message}`);
  }
  return parseTokenFile(text, path);
}
