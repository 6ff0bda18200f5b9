/**
 * Checks the service Dockerfiles and `.dockerignore` by reading them, since no Docker engine runs
 * where the tests do. The checks cover pinned bases, a lockfile install of production
 * dependencies, the non-root user of the Deployments and the entry point. They also check that
 * each image contains exactly the inputs its tag hashes.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { APP_USER_ID } from "./components/app-service.ts";
import { listBuildInputs, REPO_ROOT } from "./components/image.ts";
import { PORTS } from "./stack.ts";
import {
  execForm,
  findImportProblems,
  type IgnoreRules,
  instructionsOf,
  isIgnored,
  parseCopy,
  parseDockerfile,
  parseDockerignore,
  type Stage,
  trackContextFiles,
} from "./testing/dockerfile.ts";

/** Each service and the port its image exposes: the HTTP port, or the health port of a worker. */
const SERVICES = {
  "svc-auth": PORTS.auth,
  "svc-gateway": PORTS.gateway,
  "svc-converter": PORTS.converterHealth,
  "svc-notify": PORTS.notifyHealth,
} as const;

/** Where the Dockerfiles put the repository root inside the image. */
const APP_ROOT = "/app";

/** An image reference pinned to a version tag, optionally with a digest; never `latest`. */
const PINNED_IMAGE =
  /^[a-z0-9][a-z0-9._/-]*:(?!latest\b)[A-Za-z0-9_.-]*\d[A-Za-z0-9_.-]*(@sha256:[0-9a-f]{64})?$/;

function readRepoFile(path: string): string {
  return readFileSync(join(REPO_ROOT, path), "utf8");
}

const rules: IgnoreRules = parseDockerignore(readRepoFile(".dockerignore"));

/** The Bun version CI installs, which the images must run too. */
const CI_BUN_VERSION = /^BUN_VERSION=(\S+)$/m.exec(readRepoFile(".ci/run"))?.[1];

function finalStage(stages: readonly Stage[]): Stage {
  const stage = stages.at(-1);
  if (!stage) throw new Error("the Dockerfile has no FROM");
  return stage;
}

/** Returns the arguments of the last instruction with `keyword`, the one Docker applies. */
function lastArgs(stage: Stage, keyword: string): string | undefined {
  return instructionsOf(stage, keyword).at(-1)?.args;
}

/** Packages named by the `apt-get install` commands of a stage. */
function aptPackages(stage: Stage): string[] {
  return instructionsOf(stage, "RUN").flatMap((run) =>
    [...run.args.matchAll(/apt-get install((?:\s+[^\s&|;]+)+)/g)].flatMap((match) =>
      (match[1] ?? "")
        .trim()
        .split(/\s+/)
        .filter((word) => !word.startsWith("-")),
    ),
  );
}

describe(".dockerignore", () => {
  test.each([
    ".git/HEAD",
    ".data/gateway.db",
    "node_modules/elysia/package.json",
    "lib/node_modules/pino/package.json",
    "svc-gateway/node_modules/busboy/package.json",
    "docs/deploy.md",
    "README.md",
    "infra/index.ts",
    "lib/bench/main.ts",
    "lib/system/e2e.test.ts",
    "lib/src/tokens.test.ts",
    "svc-gateway/src/upload.test.ts",
    "svc-gateway/src/test-helpers.ts",
    "svc-converter/src/test-media.ts",
  ])("leaves out %s", (path) => {
    expect(isIgnored(rules, path)).toBe(true);
  });

  test.each([
    "package.json",
    "bun.lock",
    "bunfig.toml",
    "lib/package.json",
    "lib/src/log.ts",
    "lib/src/adapters/amqp-broker.ts",
    "svc-converter/package.json",
    "svc-converter/src/main.ts",
  ])("lets in %s", (path) => {
    expect(isIgnored(rules, path)).toBe(false);
  });
});

for (const [service, port] of Object.entries(SERVICES)) {
  describe(`${service}/Dockerfile`, () => {
    const stages = parseDockerfile(readRepoFile(`${service}/Dockerfile`));
    const final = finalStage(stages);
    const stageNames = new Set(stages.map((stage) => stage.name));
    const imageFiles = trackContextFiles(stages, REPO_ROOT, rules).at(-1) ?? new Map();
    const copied = new Set(imageFiles.values());

    test("builds in more than one stage", () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
    });

    test("pins every base image to a version", () => {
      const external = [
        ...stages.map((stage) => stage.base),
        ...stages.flatMap((stage) =>
          instructionsOf(stage, "COPY").map((copy) => parseCopy(copy.args).from),
        ),
      ].filter((image): image is string => image !== undefined && !stageNames.has(image));
      expect(external.length).toBeGreaterThan(0);
      for (const image of external) expect(image).toMatch(PINNED_IMAGE);
    });

    test("uses the Bun version that CI runs", () => {
      const bunImages = stages.map((stage) => stage.base).filter((b) => b.startsWith("oven/bun:"));
      expect(CI_BUN_VERSION).toBeDefined();
      expect(bunImages.length).toBeGreaterThan(0);
      for (const image of bunImages) expect(image).toStartWith(`oven/bun:${CI_BUN_VERSION}-`);
    });

    test("installs production dependencies from the lockfile", () => {
      const installs = stages.flatMap((stage) =>
        instructionsOf(stage, "RUN").filter((run) => /\bbun install\b/.test(run.args)),
      );
      expect(installs.length).toBe(1);
      const args = installs[0]?.args ?? "";
      expect(args).toContain("--frozen-lockfile");
      expect(args).toContain("--production");
    });

    test("installs only lib and its own workspace", () => {
      const manifests = [...copied].filter((path) => path.endsWith("package.json")).sort();
      expect(manifests).toEqual(["lib/package.json", "package.json", `${service}/package.json`]);
    });

    test("runs as the numeric user of the Deployments", () => {
      expect(lastArgs(final, "USER")).toBe(`${APP_USER_ID}:${APP_USER_ID}`);
      const keywords = final.instructions.map((instruction) => instruction.keyword);
      expect(keywords.lastIndexOf("USER")).toBeLessThan(keywords.lastIndexOf("CMD"));
      expect(keywords.lastIndexOf("RUN")).toBeLessThan(keywords.lastIndexOf("USER"));
    });

    test("runs src/main.ts under tini", () => {
      const workdir = lastArgs(final, "WORKDIR") ?? "/";
      const command = execForm(lastArgs(final, "CMD") ?? "");
      expect(execForm(lastArgs(final, "ENTRYPOINT") ?? "")).toEqual(["/usr/bin/tini", "--"]);
      expect(aptPackages(final)).toContain("tini");
      expect(command).toEqual(["bun", "run", "src/main.ts"]);
      const entry = imageFiles.get(posix.resolve(workdir, "src/main.ts"));
      expect(entry).toBe(`${service}/src/main.ts`);
      expect(existsSync(join(REPO_ROOT, entry ?? "missing"))).toBe(true);
    });

    test("stops with SIGTERM, which main.ts drains on", () => {
      expect(lastArgs(final, "STOPSIGNAL")).toBe("SIGTERM");
      // Every main.ts hands its service to runServiceMain, which stops it on SIGTERM.
      expect(readRepoFile(`${service}/src/main.ts`)).toContain("runServiceMain(");
      expect(readRepoFile("lib/src/service-main.ts")).toContain("onShutdownSignal(");
    });

    test(`exposes port ${port}`, () => {
      expect(instructionsOf(final, "EXPOSE").map((expose) => expose.args)).toEqual([String(port)]);
    });

    test("turns off the transpiler cache", () => {
      // The root filesystem is read-only in the Deployments; only /tmp is writable.
      const env = instructionsOf(final, "ENV").map((instruction) => instruction.args);
      expect(env).toContain("BUN_RUNTIME_TRANSPILER_CACHE_PATH=0");
    });

    test(service === "svc-converter" ? "installs ffmpeg and prlimit" : "omits ffmpeg", () => {
      const packages = aptPackages(final);
      if (service === "svc-converter") {
        expect(packages).toContain("ffmpeg");
        expect(packages).toContain("util-linux");
      } else {
        expect(packages).not.toContain("ffmpeg");
      }
    });

    test("copies no tests", () => {
      const tests = [...copied].filter((path) => /(\.test\.ts|\/test-[^/]*\.ts)$/.test(path));
      expect(tests).toEqual([]);
      for (const path of copied) expect(path).not.toStartWith("lib/system/");
    });

    test("copies exactly the sources the image tag hashes", () => {
      const hashed = new Set(listBuildInputs(service));
      const notHashed = [...copied].filter((path) => !hashed.has(path));
      expect(notHashed).toEqual([]);
      const sources = [...hashed].filter((path) => /^(lib|svc-[a-z]+)\/src\//.test(path));
      expect(sources.filter((path) => !copied.has(path))).toEqual([]);
      expect(imageFiles.get(`${APP_ROOT}/bun.lock`)).toBe("bun.lock");
    });

    test("copies every module main.ts imports", () => {
      expect(findImportProblems(REPO_ROOT, `${service}/src/main.ts`, copied)).toEqual([]);
    });
  });
}

test("import check reports a module left out", () => {
  const problems = findImportProblems(REPO_ROOT, "svc-auth/src/main.ts", new Set());
  expect(problems).toEqual([
    {
      file: "svc-auth/src/main.ts",
      specifier: "svc-auth/src/main.ts",
      reason: "module is not copied into the image",
    },
  ]);
});

test("COPY of an ignored path fails the tracking", () => {
  const stages = parseDockerfile(
    "FROM debian:12.11-slim\nWORKDIR /app\nCOPY infra/package.json infra/\n",
  );
  expect(() => trackContextFiles(stages, REPO_ROOT, rules)).toThrow(/infra\/package.json/);
});
