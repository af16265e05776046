import { createHash } from "node:crypto";

/** A worker token: `<worker id>.<43 base64url characters>`, the secret being 256 random bits. */
export const WORKER_TOKEN = /^(worker-\d{1,16}-[a-z0-9]{1,32})\.([A-Za-z0-9_-]{43})$/;

/** Lowercase hex SHA-256 of a secret. */
export function sha256Hex(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/**
 * The token handed to a worker at registration, and the hash the registry
 * keeps of it. The id in the token tells the server whose hash to compare
 * with; the secret alone is what proves the caller is that worker.
 */
export function issueWorkerToken(workerId: string, secret: string): { readonly token: string; readonly tokenHash: string } {
  return { token: `${workerId}.${secret}`, tokenHash: sha256Hex(secret) };
}
