/**
 * Stack config and lookups shared by the infra tests.
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { CapturedResource } from "./mock-program.ts";

/** A real Ed25519 JWK set, so that auth's own config reader accepts it. */
function signingKeySet(): string {
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  return JSON.stringify({ keys: [{ ...jwk, kid: "infra-test-1", alg: "EdDSA" }] });
}

/**
 * Secret config values. Each password has characters that must be percent-encoded in a URL and
 * a marker that appears nowhere else, so a leak into plain text is found by substring search.
 */
export const SECRETS = {
  jwtSigningKeys: signingKeySet(),
  mailUrl: "smtp://mailer:mail-secret-7f3a@smtp.example.com:587",
  mysqlRootPassword: "mysql-root-secret-2b9c",
  mysqlPassword: "mysql-app-secret-4d1e/@:",
  mongodbPassword: "mongodb-secret-8a6f",
  rabbitmqPassword: "rabbitmq-secret-3c5d",
} as const;

/** The values that must never appear in a ConfigMap or a plain `env` value. */
export const SECRET_MARKERS = [
  "mail-secret-7f3a",
  SECRETS.mysqlRootPassword,
  encodeURIComponent(SECRETS.mysqlPassword),
  SECRETS.mysqlPassword,
  SECRETS.mongodbPassword,
  SECRETS.rabbitmqPassword,
  SECRETS.jwtSigningKeys,
  // The private part of the signing key, in case the set were split up.
  (JSON.parse(SECRETS.jwtSigningKeys) as { keys: [{ d: string }] }).keys[0].d,
];

export const SECRET_KEYS = Object.keys(SECRETS);

export type K8sObject = Record<string, unknown> & {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
};

/** Kubernetes objects of one kind, keyed by their `metadata.name` as the mock engine set it. */
export function objectsOfKind(
  resources: readonly CapturedResource[],
  kind: string,
): Map<string, K8sObject> {
  const found = new Map<string, K8sObject>();
  for (const resource of resources) {
    if (resource.type.startsWith("kubernetes:") && resource.type.endsWith(`:${kind}`)) {
      const object = resource.inputs as K8sObject;
      found.set(resource.objectName ?? "", {
        ...object,
        metadata: { ...object.metadata, name: resource.objectName },
      });
    }
  }
  return found;
}

/** Returns the object or fails with the names that exist. */
export function requireObject(objects: Map<string, K8sObject>, name: string): K8sObject {
  const object = objects.get(name);
  if (!object) throw new Error(`no object named ${name}; found ${[...objects.keys()].join(", ")}`);
  return object;
}

/** Path of a service's `src/config.ts`, or undefined when that file does not exist yet. */
export function serviceConfigPath(service: string): string | undefined {
  const path = fileURLToPath(new URL(`../../${service}/src/config.ts`, import.meta.url));
  return existsSync(path) ? path : undefined;
}
