/**
 * Entry point of the notify service: reads the environment, starts consuming the `mp3` queue,
 * and drains on SIGTERM or SIGINT.
 */
import { MailConfigurationError } from "@mp3converter/lib/ports/mail";
import { runServiceMain } from "@mp3converter/lib/service-main";
import { readNotifyConfig } from "./config.ts";
import { startNotify } from "./service.ts";
import { mailSettingToFix } from "./worker.ts";

await runServiceMain({
  service: "notify",
  readConfig: readNotifyConfig,
  start: (config, logger) => startNotify(config, { logger }),
  // The mail server rejected the credentials or the TLS settings, which only a new setting fixes.
  startFailureFields: (error) =>
    error instanceof MailConfigurationError ? { setting: mailSettingToFix(error) } : {},
});
