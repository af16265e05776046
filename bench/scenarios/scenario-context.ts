import type { LoadGenerators } from "../load-generator.js";
import type { ModeConfig } from "../modes.js";
import type { ServerLauncher } from "../server-launcher.js";

/** What every scenario is given: how long to run, where to put files, how to start servers and load generators. */
export interface ScenarioContext {
  readonly mode: ModeConfig;
  /** The run's temporary directory: databases, server logs, profiles. */
  readonly workDir: string;
  readonly servers: ServerLauncher;
  readonly loadGenerators: LoadGenerators;
}
