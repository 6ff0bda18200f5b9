/** Entry point of the gateway process: `bun run src/main.ts` or `deno run -A src/main.ts`. */
import { ConfigError } from "@mp3converter/lib/config";
import { onShutdownSignal, processEnv } from "@mp3converter/lib/runtime";
import { type GatewayConfig, readGatewayConfig } from "./config.ts";
import { startGateway } from "./service.ts";

let config: Readonly<GatewayConfig>;
try {
  config = readGatewayConfig(processEnv());
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`gateway: ${error.message}\n`);
  process.exit(1);
}

const gateway = await startGateway(config);
onShutdownSignal(() => {
  gateway.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
