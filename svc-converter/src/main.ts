/**
 * Entry point of the converter service: reads the environment, starts consuming the `video`
 * queue, and drains on SIGTERM or SIGINT.
 */
import { runServiceMain } from "@mp3converter/lib/service-main";
import { readConverterConfig } from "./config.ts";
import { startConverter } from "./service.ts";

await runServiceMain({
  service: "converter",
  readConfig: readConverterConfig,
  start: (config, logger) => startConverter(config, { logger }),
});
