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
  return createIdGenerator("worker", RANDOM_LENGTH, clock, randomBytes);
}

/**
 * Makes reservation ids, `rsv-<unix ms>-<20 random characters>`: about 103
 * random bits, so one orchestrator cannot guess another's reservation.
 */
export function createReservationIdGenerator(clock: Clock, randomBytes: RandomBytes): () => string {
  return createIdGenerator("rsv", 20, clock, randomBytes);
}

function createIdGenerator(prefix: string, randomLength: number, clock: Clock, randomBytes: RandomBytes): () => string {
  return () => {
    const bytes = randomBytes(randomLength);
    let suffix = "";
    // 256 is not a multiple of 36; the small bias is irrelevant for uniqueness, which the store enforces anyway.
    for (const byte of bytes) suffix += ALPHABET[byte % ALPHABET.length];
    return `${prefix}-${Math.floor(clock.now())}-${suffix}`;
  };
}
