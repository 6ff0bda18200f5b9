import { expect, test } from "bun:test";
import { ConfigError } from "../src/config.ts";
import { readAllInOneOptions } from "./all-in-one.ts";

test("dev options have documented defaults", () => {
  const options = readAllInOneOptions({});
  expect(options.dataDir).toBe("./.data");
  expect(options.gatewayPort).toBe(8080);
  expect(options.authPort).toBe(5000);
  expect(options.host).toBe("127.0.0.1");
  expect(options.logLevel).toBe("info");
  expect(options.exitWithParent).toBe(false);
  expect(readAllInOneOptions({ EXIT_WITH_PARENT: "1" }).exitWithParent).toBe(true);
});

test("dev options name every invalid variable", () => {
  let caught: unknown;
  try {
    readAllInOneOptions({ LOG_LEVEL: "verbose", GATEWAY_PORT: "70000", AUTH_PORT: "x" });
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const message = (caught as Error).message;
  expect(message).toContain("LOG_LEVEL=verbose is invalid");
  expect(message).toContain("GATEWAY_PORT");
  expect(message).toContain("AUTH_PORT");
});
