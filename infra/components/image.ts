/**
 * Builds a service image with `@pulumi/docker` and returns the reference Kubernetes should run.
 * Images are tagged with a hash of the files the Dockerfile copies, so a changed source file gives
 * a new tag and a rollout, and an unchanged tree gives the same tag and no rollout.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as docker from "@pulumi/docker";
import type * as pulumi from "@pulumi/pulumi";
import type { ImageSettings } from "../config.ts";

/** Root of the repository, which is the Docker build context. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Workspace manifests with Bun's lockfile and settings. Each Dockerfile copies all but the other
 * services' and infra's manifests, so that `bun install --frozen-lockfile` works. All of them are
 * hashed, so a changed manifest rebuilds every image.
 */
const MANIFESTS = [
  "package.json",
  "bun.lock",
  "bunfig.toml",
  "lib/package.json",
  "svc-auth/package.json",
  "svc-gateway/package.json",
  "svc-converter/package.json",
  "svc-notify/package.json",
  "infra/package.json",
];

/**
 * Files left out of the image by `.dockerignore`, and so out of the hash: `node_modules`,
 * `.data`, tests (`*.test.ts`) and test helpers (`test-*.ts`).
 */
const IGNORED = /(^|\/)(node_modules|\.data)(\/|$)|\.test\.ts$|(^|\/)test-[^/]*\.ts$/;

/** Lists the files under `dir` (relative to the repository root), sorted, without ignored ones. */
function listFiles(dir: string): string[] {
  const absolute = join(REPO_ROOT, dir);
  let entries: string[];
  try {
    entries = readdirSync(absolute, { recursive: true, encoding: "utf8" });
  } catch {
    // A service folder that does not exist yet contributes nothing; the build itself fails on it.
    return [];
  }
  return entries
    .map((entry) => relative(REPO_ROOT, join(absolute, entry)))
    .filter((path) => !IGNORED.test(path) && statSync(join(REPO_ROOT, path)).isFile())
    .sort();
}

/**
 * Lists, relative to the repository root, the files that make up a service image: the workspace
 * manifests, `.dockerignore`, the service's Dockerfile, `lib/src` and the service's `src`.
 */
export function listBuildInputs(service: string): string[] {
  return [
    ...MANIFESTS,
    ".dockerignore",
    `${service}/Dockerfile`,
    ...listFiles("lib/src"),
    ...listFiles(`${service}/src`),
  ];
}

/** Returns a hex SHA-256 over the path and content of every file of `listBuildInputs`. */
export function hashBuildInputs(service: string): string {
  const hash = createHash("sha256");
  for (const path of listBuildInputs(service)) {
    hash.update(`${path}\0`);
    try {
      hash.update(readFileSync(join(REPO_ROOT, path)));
    } catch {
      hash.update("missing");
    }
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** Number of hex digits of the content hash used as the image tag. */
const TAG_LENGTH = 16;

export interface ServiceImage {
  image: docker.Image;
  /** What a container's `image` field gets: a content-hash tag, or a registry digest. */
  reference: pulumi.Output<string>;
}

/**
 * Builds `<service>/Dockerfile` from the repository root. Without a registry the image stays in
 * the Docker daemon the CLI talks to (minikube's, after `eval $(minikube docker-env)`) and is
 * referenced by its tag; with a registry it is pushed and referenced by its digest.
 */
export function buildServiceImage(
  service: string,
  settings: ImageSettings,
  opts?: pulumi.CustomResourceOptions,
): ServiceImage {
  const tag = hashBuildInputs(service).slice(0, TAG_LENGTH);
  const repository = settings.registry
    ? `${settings.registry}/${service}`
    : `mp3converter/${service}`;
  const push = settings.registry !== undefined;

  const image = new docker.Image(
    `${service}-image`,
    {
      imageName: `${repository}:${tag}`,
      // The provider takes the Dockerfile path relative to the Pulumi project folder (infra/),
      // not to the build context.
      build: { context: "..", dockerfile: `../${service}/Dockerfile` },
      skipPush: !push,
      registry: push
        ? {
            server: settings.registry?.split("/")[0],
            username: settings.registryUsername,
            password: settings.registryPassword,
          }
        : undefined,
    },
    opts,
  );
  return { image, reference: push ? image.repoDigest : image.imageName };
}
