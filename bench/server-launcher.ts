/**
 * The servers a scenario measures, started and stopped for it: the registry,
 * the ceiling (echo) and etcd (when it was found). A server started with a
 * profile label runs under `--cpu-prof` when the suite profiles, and its
 * profile is summarised when it stops.
 */
import type { Profiles } from "./profiles.js";
import { startEcho, startEtcd, startRegistry, type ServerProcess } from "./servers.js";

export interface RegistryLaunch {
  readonly dbPath: string;
  /** Names the server's log file in the work directory. */
  readonly label: string;
  /** Names its CPU profile under --profile; unprofiled without one. */
  readonly profile?: string;
  /** "info" waits for the "registry serving" line (cold start); "warn" (the default) for the port to answer. */
  readonly logLevel?: "info" | "warn";
  /** Serve a metrics port, for server-side latency. */
  readonly metrics?: boolean;
  /** More serve flags; those this build does not know are left out. */
  readonly flags?: Readonly<Record<string, string>>;
}

export interface ServerLauncher {
  /** Whether etcd is measured in this run (found on the PATH, and not --no-etcd). */
  readonly hasEtcd: boolean;
  registry(launch: RegistryLaunch): Promise<ServerProcess>;
  /** `bare`: the echo server's --bare, the transport with no protobuf at all. */
  echo(options?: { readonly profile?: string; readonly bare?: boolean }): Promise<ServerProcess>;
  /** Throws when {@link hasEtcd} is false. */
  etcd(): Promise<ServerProcess>;
  /** Stops the server (SIGTERM, SIGKILL after 10 s) and summarises its profile, if it had one. */
  stop(server: ServerProcess): Promise<void>;
}

export function createServerLauncher(options: { readonly workDir: string; readonly etcdBinary: string | undefined; readonly profiles: Profiles }): ServerLauncher {
  const { workDir, etcdBinary, profiles } = options;
  const profileOf = new Map<ServerProcess, string>();
  const profiled = (server: ServerProcess, profile: string | undefined) => {
    if (profile !== undefined) profileOf.set(server, profile);
    return server;
  };
  return {
    hasEtcd: etcdBinary !== undefined,
    async registry({ profile, ...launch }) {
      return profiled(await startRegistry({ ...launch, workDir, cpuProfDir: profile === undefined ? undefined : profiles.dirFor(profile) }), profile);
    },
    async echo({ profile, bare } = {}) {
      return profiled(await startEcho({ workDir, bare, cpuProfDir: profile === undefined ? undefined : profiles.dirFor(profile) }), profile);
    },
    async etcd() {
      if (etcdBinary === undefined) throw new Error("etcd is not measured in this run");
      return startEtcd({ binary: etcdBinary, workDir });
    },
    async stop(server) {
      await server.stop();
      const profile = profileOf.get(server);
      profileOf.delete(server);
      if (profile !== undefined) profiles.collect(profile);
    },
  };
}
