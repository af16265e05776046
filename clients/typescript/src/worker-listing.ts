import * as grpc from "@grpc/grpc-js";
import type { FilterInit, RegistryCalls } from "./registry-calls.js";
import { RegistryClientError } from "./registry-client-error.js";
import { toWorkerInfo, type WorkerInfo } from "./worker-info.js";

/**
 * Every worker matching `filter`, following page tokens (each page retried
 * as a read), and the revision of the first page: the listing shows the
 * registry as of that revision or later, so that watching from
 * `revision + 1` misses nothing.
 *
 * @throws RegistryClientError INTERNAL if the server repeats a page token.
 */
export async function listWorkers(
  calls: RegistryCalls,
  filter: FilterInit,
  pageSize: number,
): Promise<{ revision: number; workers: WorkerInfo[] }> {
  const workers: WorkerInfo[] = [];
  let revision: number | undefined;
  let pageToken = "";
  do {
    const page = await calls.unary("discoverWorkers", { filter, pageSize, pageToken });
    revision ??= Number(page.revision);
    for (const worker of page.workers) {
      workers.push(toWorkerInfo(worker));
    }
    // A server that hands back the token it was given would loop us forever.
    if (page.nextPageToken !== "" && page.nextPageToken === pageToken) {
      throw new RegistryClientError("discoverWorkers", grpc.status.INTERNAL, `the registry repeated page token ${JSON.stringify(pageToken)}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return { revision, workers };
}
