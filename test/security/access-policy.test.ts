import { describe, expect, it } from "vitest";
import { ConfigError, PermissionDeniedError, RemovedWorkerTokenError, UnauthenticatedError } from "../../src/domain/errors.js";
import { sha256Hex } from "../../src/domain/worker-token.js";
import { authorize, type Operation } from "../../src/security/access-policy.js";
import { Authenticator } from "../../src/security/authenticator.js";
import type { Principal } from "../../src/security/roles.js";
import { parseTokenFile } from "../../src/security/token-file.js";

const OPERATIONS: readonly Operation[] = ["register", "heartbeat", "unregister", "account", "read-worker", "read-fleet", "reserve", "administer"];
const mine = { workerId: "worker-1-mine", registeredBy: "hash-of-my-token" };
const theirs = { workerId: "worker-1-theirs", registeredBy: "hash-of-another-token" };

function allowed(principal: Principal, target = mine): Operation[] {
  return OPERATIONS.filter((operation) => {
    try {
      authorize(principal, operation, target);
      return true;
    } catch (error) {
      expect(error).toBeInstanceOf(PermissionDeniedError);
      return false;
    }
  });
}

describe("authorize", () => {
  it("gives each role exactly its operations", () => {
    expect(allowed({ kind: "role", role: "admin", tokenHash: "x" }, theirs)).toEqual(OPERATIONS);
    expect(allowed({ kind: "role", role: "orchestrator", tokenHash: "x" }, theirs)).toEqual(["account", "read-worker", "read-fleet", "reserve"]);
    expect(allowed({ kind: "role", role: "worker", tokenHash: "hash-of-my-token" }, theirs)).toEqual(["register"]);
  });

  it("lets a worker-role token act on the workers it registered", () => {
    expect(allowed({ kind: "role", role: "worker", tokenHash: "hash-of-my-token" }, mine)).toEqual(["register", "heartbeat", "unregister", "account", "read-worker"]);
  });

  it("confines a worker token to its own worker", () => {
    const principal: Principal = { kind: "worker", workerId: "worker-1-mine" };
    expect(allowed(principal, mine)).toEqual(["heartbeat", "unregister", "account", "read-worker"]);
    expect(allowed(principal, theirs)).toEqual([]);
    expect(() => authorize(principal, "heartbeat", theirs)).toThrow("the token of worker worker-1-mine may act only on that worker");
    expect(() => authorize(principal, "read-fleet")).toThrow("a worker token may not read-fleet; use a role token");
  });

  it("allows everything with authentication off", () => {
    expect(allowed({ kind: "open" }, theirs)).toEqual(OPERATIONS);
  });
});

describe("parseTokenFile", () => {
  it("reads roles, plain and hashed tokens, comments and blank lines, keeping only hashes", () => {
    const hashed = sha256Hex("a-token-given-only-as-its-hash");
    const tokens = parseTokenFile(
      ["# operators", "admin   s3cret-admin-token-0001", "", `orchestrator sha256:${hashed.toUpperCase()}  # rotated 2026-11`, "worker s3cret-worker-token-0001"].join("\n"),
      "tokens.txt",
    );
    expect(tokens).toEqual([
      { role: "admin", sha256: sha256Hex("s3cret-admin-token-0001") },
      { role: "orchestrator", sha256: hashed },
      { role: "worker", sha256: sha256Hex("s3cret-worker-token-0001") },
    ]);
    expect(JSON.stringify(tokens)).not.toContain("s3cret");
  });

  it("lets a token contain #, a comment starting only at a line's start or after white space", () => {
    expect(parseTokenFile("admin pass#word-0123456789 # a comment", "t")).toEqual([{ role: "admin", sha256: sha256Hex("pass#word-0123456789") }]);
  });

  it.each([
    ["superuser some-long-enough-token", /tokens.txt:1: the first field must be a role, one of worker, orchestrator, admin$/],
    ["some-long-enough-token admin", /tokens.txt:1: the first field must be a role/],
    ["admin", /tokens.txt:1: expected "ROLE TOKEN", got 1 fields/],
    ["admin short", /tokens.txt:1: token too short/],
    ["admin sha256:abc", /tokens.txt:1: a sha256: token must be 64 hex digits/],
    ["# nothing but a comment", /no tokens; an empty tokens file would lock everyone out/],
  ])("refuses %j, naming the line and never echoing a token", (text, message) => {
    expect(() => parseTokenFile(text, "tokens.txt")).toThrow(ConfigError);
    expect(() => parseTokenFile(text, "tokens.txt")).toThrow(message);
  });
});

describe("Authenticator", () => {
  const roleTokens = parseTokenFile("admin admin-token-0123456789\norchestrator orch-token-0123456789", "t");
  const secret = "A".repeat(43);
  const workerHashes = new Map([["worker-1-abc", sha256Hex(secret)]]);
  const authenticator = new Authenticator(roleTokens, (id) => workerHashes.get(id));

  it("knows role tokens and worker tokens", () => {
    expect(authenticator.authenticate(["Bearer admin-token-0123456789"])).toEqual({ kind: "role", role: "admin", tokenHash: sha256Hex("admin-token-0123456789") });
    expect(authenticator.authenticate([`Bearer worker-1-abc.${secret}`])).toEqual({ kind: "worker", workerId: "worker-1-abc" });
  });

  it.each([
    [[], /missing authorization metadata/],
    [["admin-token-0123456789"], /must be "Bearer <token>"/],
    [["Bearer nope-nope-nope-nope"], /^invalid token$/],
    [[`Bearer worker-1-abc.${"B".repeat(43)}`], /^invalid worker token$/],
    [["Bearer a", "Bearer b"], /more than one/],
  ])("refuses %j as UNAUTHENTICATED", (values, message) => {
    expect(() => authenticator.authenticate(values)).toThrow(UnauthenticatedError);
    expect(() => authenticator.authenticate(values)).toThrow(message);
  });

  it("refuses the token of a worker that is gone, saying it is not found, so the worker knows to register again", () => {
    expect(() => authenticator.authenticate([`Bearer worker-2-gone.${secret}`])).toThrow(
      new RemovedWorkerTokenError("worker-2-gone"),
    );
    expect(() => authenticator.authenticate([`Bearer worker-2-gone.${secret}`])).toThrow("worker worker-2-gone not found: its token is no longer valid; register again");
  });

  it("says why a removed worker left when it knows: a drained worker is not told to register again", () => {
    const reasons = new Map([["worker-3-drained", "drained"], ["worker-4-expired", "expired"]]);
    const remembering = new Authenticator(roleTokens, () => undefined, (id) => reasons.get(id));
    expect(() => remembering.authenticate([`Bearer worker-3-drained.${secret}`])).toThrow(
      /^worker worker-3-drained not found: it was drained and removed once its tasks finished; its token is no longer valid$/,
    );
    expect(() => remembering.authenticate([`Bearer worker-4-expired.${secret}`])).toThrow(
      /^worker worker-4-expired not found: cleanup removed it after its heartbeats stopped; its token is no longer valid; register again$/,
    );
  });

  it("takes the Bearer scheme in any case", () => {
    expect(authenticator.authenticate(["bearer admin-token-0123456789"])).toMatchObject({ role: "admin" });
  });

  it("swaps role tokens on reload", () => {
    const reloaded = new Authenticator(roleTokens, () => undefined);
    reloaded.replaceRoleTokens(parseTokenFile("admin brand-new-token-0123456789", "t"));
    expect(() => reloaded.authenticate(["Bearer admin-token-0123456789"])).toThrow(UnauthenticatedError);
    expect(reloaded.authenticate(["Bearer brand-new-token-0123456789"])).toMatchObject({ role: "admin" });
  });

  it("lets everything through as open when no tokens file is configured", () => {
    expect(new Authenticator(undefined, () => undefined).authenticate([])).toEqual({ kind: "open" });
  });
});
