/**
 * Runs the Pulumi program against Pulumi's mock engine, with no CLI, cluster or Docker daemon,
 * and records every resource the program registers together with its inputs.
 */
import * as pulumi from "@pulumi/pulumi";

/** The project name; stack config keys are prefixed with it. */
const PROJECT = "mp3converter";

export interface CapturedResource {
  /** Pulumi type token, for example `kubernetes:apps/v1:Deployment`. */
  type: string;
  /** Pulumi logical name. */
  name: string;
  /** Inputs with secrets unwrapped to their plain values. */
  inputs: Record<string, unknown>;
  /** `metadata.name` as the mock provider sets it (Kubernetes objects only). */
  objectName: string | undefined;
}

export interface ProgramRun {
  resources: CapturedResource[];
  gatewayUrl: string;
  images: Record<string, string>;
}

/** Replaces Pulumi's serialized secret wrappers with their plain values, recursively. */
function unwrapSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value === null || typeof value !== "object") return value;
  const record = value as Record<string, unknown>;
  if (record[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) {
    return unwrapSecrets(record.value);
  }
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, unwrapSecrets(v)]));
}

/** Fake provider outputs: Kubernetes auto-naming, and the outputs of a built Docker image. */
function mockState(type: string, name: string, inputs: Record<string, unknown>) {
  if (type === "docker:index/image:Image") {
    const imageName = String(inputs.imageName);
    const repository = imageName.replace(/:[^:/]+$/, "");
    return { ...inputs, repoDigest: `${repository}@sha256:${"ab".repeat(32)}` };
  }
  if (type.startsWith("kubernetes:")) {
    const metadata = (inputs.metadata ?? {}) as Record<string, unknown>;
    return { ...inputs, metadata: { ...metadata, name: metadata.name ?? `${name}-mock1234` } };
  }
  return inputs;
}

function outputValue<T>(output: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) => pulumi.output(output).apply((value) => resolve(value as T)));
}

/**
 * Sets `config` (keys without the project prefix) as the stack config, marks `secretKeys` as
 * secret, runs `deployStack(readStackConfig())` and waits until every resource is registered.
 */
export async function runProgram(
  config: Record<string, string>,
  secretKeys: readonly string[],
): Promise<ProgramRun> {
  const resources: CapturedResource[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
        const state = mockState(args.type, args.name, inputs);
        const metadata = (state as { metadata?: { name?: string } }).metadata;
        resources.push({ type: args.type, name: args.name, inputs, objectName: metadata?.name });
        return { id: `${args.name}-id`, state };
      },
      call(args) {
        return args.inputs;
      },
    },
    PROJECT,
    "test",
  );
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(config).map(([k, v]) => [`${PROJECT}:${k}`, v])),
    secretKeys.map((key) => `${PROJECT}:${key}`),
  );

  const { readStackConfig } = await import("../config.ts");
  const { deployStack } = await import("../stack.ts");
  const outputs = deployStack(readStackConfig());
  const images: Record<string, string> = {};
  for (const [service, reference] of Object.entries(outputs.images)) {
    images[service] = await outputValue(reference);
  }
  // Waits for the registrations still in flight, then detaches from the mock engine.
  await pulumi.runtime.disconnect();
  return { resources, gatewayUrl: outputs.gatewayUrl, images };
}
