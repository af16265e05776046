import type { Clock } from "./clock.js";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const RANDOM_LENGTH = 9;

/** A source of random bytes; crypto.randomBytes in production, a seeded source in tests. */
export type RandomBytes = (size: number) => Uint8Array;

/**
 * Makes worker ids of the guide's form, `worker-<unix ms>-<9 random
 * characters from a-z0-9>`: about 46 random bits, and sortable by
 * registration time at a glance.
 */
export function createWorkerIdGenerator(clock: Clock, randomBytes: RandomBytes): () => string {
  return () => {
    const bytes = randomBytes(RANDOM_LENGTH);
    let suffix = "";
    // 256 is not a multiple of 36; the small bias is irrelevant for uniqueness, which the store enforces anyway.
    for (const byte of bytes) suffix += ALPHABET[byte % ALPHABET.length];
    return `worker-${Math.floor(clock.now())}-${suffix}`;
  };
}
