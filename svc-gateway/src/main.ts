/** Entry point of the gateway process: `bun run src/main.ts` or `deno run -A src/main.ts`. */
import { runServiceMain } from "@mp3converter/lib/service-main";
import { readGatewayConfig } from "./config.ts";
import { startGateway } from "./service.ts";

await runServiceMain({
  service: "gateway",
  readConfig: readGatewayConfig,
  start: (config, logger) => startGateway(config, { logger }),
});
