/** Entry point of the auth service when it runs alone, as in Kubernetes. */
import { runServiceMain } from "@mp3converter/lib/service-main";
import { readAuthConfig } from "./config.ts";
import { startAuth } from "./service.ts";

await runServiceMain({
  service: "svc-auth",
  readConfig: readAuthConfig,
  start: (config, logger) => startAuth(config, { logger }),
});
