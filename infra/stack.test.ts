import { beforeAll, describe, expect, test } from "bun:test";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1";
import { ConfigMap, Namespace, Secret, Service } from "kubernetes-models/v1";
import { ENDPOINT_REMOVAL_DELAY_SECONDS } from "./components/app-service.ts";
import { CONVERTER_STOP_MARGIN_SECONDS } from "./config.ts";
import { parseNginxSize } from "./ingress.ts";
import {
  type K8sObject,
  objectsOfKind,
  requireObject,
  SECRET_KEYS,
  SECRET_MARKERS,
  SECRETS,
  serviceConfigPath,
} from "./testing/fixtures.ts";
import { type ProgramRun, runProgram } from "./testing/mock-program.ts";

type Container = {
  name: string;
  image: string;
  env?: {
    name: string;
    value?: string;
    valueFrom?: Record<string, { name: string; key: string }>;
  }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
};
type PodSpec = {
  containers: Container[];
  securityContext?: Record<string, unknown>;
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; emptyDir?: { sizeLimit?: string } }[];
};

const APPS = ["auth", "gateway", "converter", "notify"] as const;

/** Model class of each kind the program creates; a kind missing here fails the schema test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "kubernetes:core/v1:Namespace": Namespace,
  "kubernetes:core/v1:ConfigMap": ConfigMap,
  "kubernetes:core/v1:Secret": Secret,
  "kubernetes:core/v1:Service": Service,
  "kubernetes:apps/v1:Deployment": Deployment,
  "kubernetes:apps/v1:StatefulSet": StatefulSet,
  "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "kubernetes:networking.k8s.io/v1:Ingress": Ingress,
};

function podSpec(object: K8sObject): PodSpec {
  return (object.spec as { template: { spec: PodSpec } }).template.spec;
}

/** The environment a container starts with: `env` and `envFrom`, with references resolved. */
function resolveEnv(run: ProgramRun, container: Container): Record<string, string> {
  const configMaps = objectsOfKind(run.resources, "ConfigMap");
  const secrets = objectsOfKind(run.resources, "Secret");
  const secretData = (name: string) =>
    (requireObject(secrets, name).stringData ?? {}) as Record<string, string>;
  const configData = (name: string) =>
    (requireObject(configMaps, name).data ?? {}) as Record<string, string>;

  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) Object.assign(env, configData(source.configMapRef.name));
    if (source.secretRef) Object.assign(env, secretData(source.secretRef.name));
  }
  for (const variable of container.env ?? []) {
    const secretRef = variable.valueFrom?.secretKeyRef;
    const configRef = variable.valueFrom?.configMapKeyRef;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (secretRef) env[variable.name] = String(secretData(secretRef.name)[secretRef.key]);
    else if (configRef) env[variable.name] = String(configData(configRef.name)[configRef.key]);
  }
  return env;
}

/** Every string inside `value`, so that JSON escaping cannot hide a secret from a search. */
function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value === null || typeof value !== "object") return [];
  return Object.values(value).flatMap(stringsIn);
}

function appContainer(run: ProgramRun, app: string): Container {
  const deployment = requireObject(objectsOfKind(run.resources, "Deployment"), app);
  const container = podSpec(deployment).containers[0];
  if (!container) throw new Error(`deployment ${app} has no container`);
  return container;
}

function configValues(): Record<string, string> {
  return { ...SECRETS };
}

describe("default minikube stack", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runProgram(configValues(), SECRET_KEYS);
  });

  test("every object passes the Kubernetes schema", () => {
    const kubernetes = run.resources.filter((r) => r.type.startsWith("kubernetes:"));
    expect(kubernetes.length).toBeGreaterThan(20);
    for (const resource of kubernetes) {
      const Model = MODELS[resource.type];
      expect(Model, `no schema model for ${resource.type}`).toBeDefined();
      if (!Model) continue;
      const object = { ...resource.inputs } as K8sObject;
      object.metadata = { ...object.metadata, name: resource.objectName };
      expect(() => new Model(object as never).validate(), resource.name).not.toThrow();
    }
  });

  test("schema check rejects a broken object", () => {
    const deployment = requireObject(objectsOfKind(run.resources, "Deployment"), "auth");
    const broken = structuredClone(deployment) as K8sObject & { spec: { replicas: unknown } };
    broken.spec.replicas = "two";
    expect(() => new Deployment(broken as never).validate()).toThrow();
  });

  test("objects live in the mp3converter namespace", () => {
    const namespaced = run.resources.filter(
      (r) => r.type.startsWith("kubernetes:") && !r.type.endsWith(":Namespace"),
    );
    for (const resource of namespaced) {
      const metadata = (resource.inputs as K8sObject).metadata;
      expect(metadata?.namespace, resource.name).toBe("mp3converter");
    }
  });

  test("replica defaults are 2, 2, 4, 4", () => {
    const deployments = objectsOfKind(run.resources, "Deployment");
    const replicas = (app: string) => requireObject(deployments, app).spec?.replicas;
    expect(replicas("auth")).toBe(2);
    expect(replicas("gateway")).toBe(2);
    expect(replicas("converter")).toBe(4);
    expect(replicas("notify")).toBe(4);
  });

  test("rolling updates keep every pod serving", () => {
    for (const deployment of objectsOfKind(run.resources, "Deployment").values()) {
      const strategy = deployment.spec?.strategy as {
        type: string;
        rollingUpdate: Record<string, unknown>;
      };
      expect(strategy.type).toBe("RollingUpdate");
      expect(strategy.rollingUpdate).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    }
  });

  test("app containers have probes on their health port", () => {
    const expectedPorts = { auth: 5000, gateway: 8080, converter: 8081, notify: 8082 };
    for (const app of APPS) {
      const container = appContainer(run, app);
      const readiness = container.readinessProbe?.httpGet;
      const liveness = container.livenessProbe?.httpGet;
      expect(readiness?.path, app).toBe("/readyz");
      expect(liveness?.path, app).toBe("/healthz");
      const port = container.ports?.find((p) => p.name === readiness?.port);
      expect(port?.containerPort, app).toBe(expectedPorts[app]);
      expect(liveness?.port, app).toBe(readiness?.port);
    }
  });

  test("app containers have requests and limits", () => {
    for (const app of APPS) {
      const { resources } = appContainer(run, app);
      for (const key of ["cpu", "memory"]) {
        expect(resources?.requests?.[key], `${app} ${key} request`).toBeString();
        expect(resources?.limits?.[key], `${app} ${key} limit`).toBeString();
      }
    }
  });

  test("app pods run restricted and non-root", () => {
    for (const app of APPS) {
      const spec = podSpec(requireObject(objectsOfKind(run.resources, "Deployment"), app));
      const container = spec.containers[0];
      const security = container?.securityContext;
      expect(spec.securityContext?.runAsNonRoot, app).toBe(true);
      expect(spec.securityContext?.runAsUser, app).toBe(10001);
      expect(security?.runAsNonRoot, app).toBe(true);
      expect(security?.readOnlyRootFilesystem, app).toBe(true);
      expect(security?.allowPrivilegeEscalation, app).toBe(false);
      expect(security?.capabilities?.drop, app).toEqual(["ALL"]);
      expect(security?.seccompProfile, app).toEqual({ type: "RuntimeDefault" });
      expect(container?.volumeMounts, app).toContainEqual({ name: "tmp", mountPath: "/tmp" });
      const tmp = spec.volumes?.find((v) => v.name === "tmp");
      expect(tmp?.emptyDir?.sizeLimit, app).toBeString();
    }
  });

  test("served apps outlast endpoint removal", () => {
    for (const app of ["auth", "gateway"] as const) {
      const spec = podSpec(requireObject(objectsOfKind(run.resources, "Deployment"), app));
      const container = spec.containers[0] as {
        lifecycle?: { preStop?: { exec?: { command?: string[] } } };
      };
      const command = container.lifecycle?.preStop?.exec?.command;
      expect(command, app).toEqual(["sleep", String(ENDPOINT_REMOVAL_DELAY_SECONDS)]);
      expect(spec.terminationGracePeriodSeconds, app).toBeGreaterThan(
        ENDPOINT_REMOVAL_DELAY_SECONDS,
      );
    }
  });

  test("converter grace period outlasts its drain", () => {
    const spec = podSpec(requireObject(objectsOfKind(run.resources, "Deployment"), "converter"));
    const env = resolveEnv(run, appContainer(run, "converter"));
    expect(env.CONVERTER_DRAIN_SECONDS).toBe("60");
    expect(spec.terminationGracePeriodSeconds).toBe(60 + CONVERTER_STOP_MARGIN_SECONDS);
    expect(env.CONVERT_TIMEOUT_SECONDS).toBe("1800");
    expect(env.WORK_DIR).toBe("/tmp");
  });

  test("no image is tagged latest", () => {
    const workloads = [
      ...objectsOfKind(run.resources, "Deployment").values(),
      ...objectsOfKind(run.resources, "StatefulSet").values(),
    ];
    expect(workloads.length).toBe(7);
    for (const workload of workloads) {
      for (const container of podSpec(workload).containers) {
        const image = container.image;
        const tag = /@sha256:/.test(image) ? "digest" : /:([^:/]+)$/.exec(image)?.[1];
        expect(tag, image).toBeDefined();
        expect(tag, image).not.toBe("latest");
      }
    }
    const builds = run.resources.filter((r) => r.type === "docker:index/image:Image");
    expect(builds.length).toBe(4);
    for (const build of builds) {
      expect(String(build.inputs.imageName)).toMatch(/:[0-9a-f]{16}$/);
    }
  });

  test("local images are built without a push", () => {
    const builds = run.resources.filter((r) => r.type === "docker:index/image:Image");
    for (const build of builds) {
      const service = build.name.replace(/-image$/, "");
      expect(build.inputs.skipPush).toBe(true);
      expect(build.inputs.build).toEqual({
        context: "..",
        dockerfile: `../${service}/Dockerfile`,
      });
    }
    for (const app of APPS) {
      expect(run.images[app]).toMatch(new RegExp(`^mp3converter/svc-${app}:[0-9a-f]{16}$`));
      expect(appContainer(run, app).image).toBe(run.images[app] as string);
    }
  });

  test("no secret value is stored in plain text", () => {
    // Everything but a Secret is plain text to anyone who can read the namespace: ConfigMaps,
    // env values, args and annotations alike.
    const plain = run.resources.filter(
      (r) => r.type.startsWith("kubernetes:") && !r.type.endsWith(":Secret"),
    );
    expect(objectsOfKind(run.resources, "ConfigMap").size).toBe(4);
    for (const resource of plain) {
      const strings = stringsIn(resource.inputs);
      for (const marker of SECRET_MARKERS) {
        const leaked = strings.some((text) => text.includes(marker));
        expect(leaked, `${resource.type} ${resource.name}`).toBe(false);
      }
    }
  });

  test("secret values sit in Secrets only", () => {
    const strings = stringsIn([...objectsOfKind(run.resources, "Secret").values()]);
    for (const marker of SECRET_MARKERS) {
      expect(
        strings.some((text) => text.includes(marker)),
        marker,
      ).toBe(true);
    }
  });

  test("secrets reach the apps through Secrets", () => {
    const gateway = resolveEnv(run, appContainer(run, "gateway"));
    const password = encodeURIComponent(SECRETS.mysqlPassword);
    expect(gateway.DATABASE_URL).toBe(`mysql://mp3converter:${password}@mysql:3306/mp3converter`);
    expect(gateway.STORAGE_URL).toBe(
      `mongodb://root:${SECRETS.mongodbPassword}@mongodb:27017/mp3converter?authSource=admin`,
    );
    expect(gateway.BROKER_URL).toBe(
      `amqp://mp3converter:${SECRETS.rabbitmqPassword}@rabbitmq:5672`,
    );
    const auth = resolveEnv(run, appContainer(run, "auth"));
    expect(auth.JWT_SIGNING_KEYS).toBe(SECRETS.jwtSigningKeys);
    expect(resolveEnv(run, appContainer(run, "notify")).MAIL_URL).toBe(SECRETS.mailUrl);
  });

  test("ingress body size fits the upload limit", () => {
    const ingress = requireObject(objectsOfKind(run.resources, "Ingress"), "gateway");
    const annotations = ingress.metadata?.annotations ?? {};
    const bodySize = annotations["nginx.ingress.kubernetes.io/proxy-body-size"] ?? "";
    const uploadMaxBytes = Number(resolveEnv(run, appContainer(run, "gateway")).UPLOAD_MAX_BYTES);
    expect(uploadMaxBytes).toBe(524_288_000);
    expect(bodySize).toBe("501m");
    // Room for the multipart framing around a file of exactly the limit, and not much more.
    expect(parseNginxSize(bodySize)).toBeGreaterThanOrEqual(uploadMaxBytes + 64 * 1024);
    expect(parseNginxSize(bodySize)).toBeLessThanOrEqual(uploadMaxBytes + 2 * 1024 * 1024);
    expect(annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"]).toBe("off");
    expect(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]).toBe("600");
    expect(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]).toBe("600");
  });

  test("ingress routes the host to the gateway", () => {
    const ingresses = objectsOfKind(run.resources, "Ingress");
    expect([...ingresses.keys()]).toEqual(["gateway"]);
    const spec = requireObject(ingresses, "gateway").spec as {
      ingressClassName: string;
      rules: { host: string; http: { paths: { backend: unknown }[] } }[];
    };
    expect(spec.ingressClassName).toBe("nginx");
    expect(spec.rules[0]?.host).toBe("mp3converter.com");
    expect(spec.rules[0]?.http.paths[0]?.backend).toEqual({
      service: { name: "gateway", port: { name: "http" } },
    });
    const service = requireObject(objectsOfKind(run.resources, "Service"), "gateway");
    expect(service.spec?.ports).toEqual([{ name: "http", port: 8080, targetPort: "http" }]);
    expect(run.gatewayUrl).toBe("http://mp3converter.com");
  });

  test("HPA scales the converter on CPU", () => {
    const autoscalers = objectsOfKind(run.resources, "HorizontalPodAutoscaler");
    expect([...autoscalers.keys()]).toEqual(["converter"]);
    const spec = requireObject(autoscalers, "converter").spec as {
      scaleTargetRef: unknown;
      minReplicas: number;
      maxReplicas: number;
      metrics: { resource: { name: string } }[];
    };
    expect(spec.scaleTargetRef).toEqual({
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: "converter",
    });
    expect(spec.minReplicas).toBe(4);
    expect(spec.maxReplicas).toBe(8);
    expect(spec.metrics[0]?.resource.name).toBe("cpu");
  });

  test("backing servers keep data on volumes", () => {
    const statefulSets = objectsOfKind(run.resources, "StatefulSet");
    const expected = {
      mysql: { image: "mysql:8.4.2", size: "2Gi" },
      mongodb: { image: "mongo:7.0.14", size: "10Gi" },
      rabbitmq: { image: "rabbitmq:3.13.7-management", size: "1Gi" },
    };
    expect([...statefulSets.keys()].sort()).toEqual(Object.keys(expected).sort());
    const services = objectsOfKind(run.resources, "Service");
    for (const [name, { image, size }] of Object.entries(expected)) {
      const statefulSet = requireObject(statefulSets, name);
      const spec = statefulSet.spec as {
        serviceName: string;
        volumeClaimTemplates: { spec: { storageClassName: string; resources: unknown } }[];
      };
      const container = podSpec(statefulSet).containers[0] as Container & {
        readinessProbe?: { exec?: unknown };
      };
      expect(container.image).toBe(image);
      expect(container.readinessProbe?.exec, name).toBeDefined();
      expect(spec.serviceName).toBe(name);
      expect(requireObject(services, name).spec?.clusterIP).toBe("None");
      const claim = spec.volumeClaimTemplates[0]?.spec;
      expect(claim?.storageClassName).toBe("standard");
      expect(claim?.resources).toEqual({ requests: { storage: size } });
      for (const variable of container.env ?? []) {
        const isCredential = /PASS|USER/.test(variable.name);
        if (isCredential) expect(variable.valueFrom?.secretKeyRef, variable.name).toBeDefined();
      }
    }
  });

  describe("service config accepts the declared environment", () => {
    const readers = {
      auth: ["svc-auth", "readAuthConfig"],
      gateway: ["svc-gateway", "readGatewayConfig"],
      converter: ["svc-converter", "readConverterConfig"],
      notify: ["svc-notify", "readNotifyConfig"],
    } as const;

    for (const app of APPS) {
      const [service, reader] = readers[app];
      const path = serviceConfigPath(service);
      // NOTE: a service whose src/config.ts does not exist yet is skipped here; the required
      // variable list below still covers it.
      test.skipIf(path === undefined)(`${service} config reads its env`, async () => {
        const module = (await import(path as string)) as Record<string, (env: object) => object>;
        const read = module[reader];
        expect(read, `${service} exports ${reader}`).toBeFunction();
        const env = resolveEnv(run, appContainer(run, app));
        const config = read?.(env) as Record<string, unknown>;
        const container = appContainer(run, app);
        const port = container.ports?.[0]?.containerPort;
        expect(config.healthPort ?? config.port, `${service} serves probes on ${port}`).toBe(port);
      });
    }
  });

  test("apps get every variable they require", () => {
    const required = {
      auth: ["PORT", "DATABASE_URL", "JWT_SIGNING_KEYS", "JWT_ISSUER", "JWT_AUDIENCE"],
      gateway: [
        "PORT",
        "DATABASE_URL",
        "STORAGE_URL",
        "BROKER_URL",
        "AUTH_URL",
        "PUBLIC_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "UPLOAD_MAX_BYTES",
        "MAX_ACTIVE_JOBS_PER_USER",
        "JOB_RETENTION_DAYS",
      ],
      converter: ["BROKER_URL", "STORAGE_URL", "HEALTH_PORT", "WORK_DIR"],
      notify: [
        "BROKER_URL",
        "MAIL_URL",
        "MAIL_FROM",
        "PUBLIC_URL",
        "HEALTH_PORT",
        "MAIL_RETRY_SECONDS",
      ],
    };
    for (const app of APPS) {
      const env = resolveEnv(run, appContainer(run, app));
      for (const name of required[app]) expect(env[name], `${app} ${name}`).toBeString();
      expect(env.LOG_LEVEL, `${app} LOG_LEVEL`).toBe("info");
    }
    const gateway = resolveEnv(run, appContainer(run, "gateway"));
    expect(gateway.AUTH_URL).toBe("http://auth:5000");
    expect(gateway.PUBLIC_URL).toBe("http://mp3converter.com");
    expect(gateway.MAX_ACTIVE_JOBS_PER_USER).toBe("10");
    expect(gateway.JOB_RETENTION_DAYS).toBe("0");
    expect(resolveEnv(run, appContainer(run, "notify")).MAIL_RETRY_SECONDS).toBe("600");
    expect(resolveEnv(run, appContainer(run, "auth")).TRUST_PROXY).toBe("true");
  });
});

describe("stack with outside servers and a registry", () => {
  let run: ProgramRun;
  const outside = {
    authDatabaseUrl: "mysql://auth:outside-auth-9e2f@db.example.com:3306/auth",
    gatewayDatabaseUrl: "mysql://gw:outside-gw-1b7c@db.example.com:3306/gateway",
    storageUrl: "mongodb+srv://app:outside-mongo-5a3d@cluster0.example.net/mp3converter",
    brokerUrl: "amqps://app:outside-amqp-6d8e@mq.example.com:5671",
  };
  beforeAll(async () => {
    run = await runProgram(
      {
        jwtSigningKeys: SECRETS.jwtSigningKeys,
        mailUrl: SECRETS.mailUrl,
        ...outside,
        imageRegistry: "registry.example.com/team/",
        registryUsername: "deployer",
        registryPassword: "registry-secret-4f4f",
        ingressTlsSecretName: "mp3converter-tls",
      },
      ["jwtSigningKeys", "mailUrl", "registryPassword", ...Object.keys(outside)],
    );
  });

  test("no backing server is deployed", () => {
    expect(objectsOfKind(run.resources, "StatefulSet").size).toBe(0);
  });

  test("apps use the outside URLs", () => {
    const gateway = resolveEnv(run, appContainer(run, "gateway"));
    expect(gateway.DATABASE_URL).toBe(outside.gatewayDatabaseUrl);
    expect(gateway.STORAGE_URL).toBe(outside.storageUrl);
    expect(gateway.BROKER_URL).toBe(outside.brokerUrl);
    expect(resolveEnv(run, appContainer(run, "auth")).DATABASE_URL).toBe(outside.authDatabaseUrl);
  });

  test("images are pushed and run by digest", () => {
    const builds = run.resources.filter((r) => r.type === "docker:index/image:Image");
    for (const build of builds) {
      expect(build.inputs.skipPush).toBe(false);
      expect(String(build.inputs.imageName)).toMatch(
        /^registry\.example\.com\/team\/svc-[a-z]+:[0-9a-f]{16}$/,
      );
      expect(build.inputs.registry).toEqual({
        server: "registry.example.com",
        username: "deployer",
        password: "registry-secret-4f4f",
      });
    }
    expect(appContainer(run, "gateway").image).toMatch(
      /^registry\.example\.com\/team\/svc-gateway@sha256:[0-9a-f]{64}$/,
    );
  });

  test("TLS makes the public URL https", () => {
    const ingress = requireObject(objectsOfKind(run.resources, "Ingress"), "gateway");
    expect((ingress.spec as { tls: unknown }).tls).toEqual([
      { hosts: ["mp3converter.com"], secretName: "mp3converter-tls" },
    ]);
    expect(run.gatewayUrl).toBe("https://mp3converter.com");
    expect(resolveEnv(run, appContainer(run, "notify")).PUBLIC_URL).toBe(
      "https://mp3converter.com",
    );
  });
});

describe("converter drain settings", () => {
  test("grace period follows the drain", async () => {
    const run = await runProgram({ ...SECRETS, converterDrainSeconds: "300" }, SECRET_KEYS);
    const deployment = requireObject(objectsOfKind(run.resources, "Deployment"), "converter");
    const env = resolveEnv(run, appContainer(run, "converter"));
    expect(env.CONVERTER_DRAIN_SECONDS).toBe("300");
    expect(podSpec(deployment).terminationGracePeriodSeconds).toBe(
      300 + CONVERTER_STOP_MARGIN_SECONDS,
    );
  });

  test("rejects a converter grace period key", async () => {
    const config = { ...SECRETS, converterTerminationGracePeriodSeconds: "1860" };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow(
      "converterTerminationGracePeriodSeconds is not a setting",
    );
  });

  test("rejects a drain over an hour", async () => {
    const config = { ...SECRETS, converterDrainSeconds: "3601" };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow(
      "converterDrainSeconds=3601 is invalid",
    );
  });
});

describe("job retention setting", () => {
  test("passes jobRetentionDays to the gateway", async () => {
    const run = await runProgram({ ...SECRETS, jobRetentionDays: "30" }, SECRET_KEYS);
    expect(resolveEnv(run, appContainer(run, "gateway")).JOB_RETENTION_DAYS).toBe("30");
  });

  test("rejects a negative retention", async () => {
    const config = { ...SECRETS, jobRetentionDays: "-1" };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow("jobRetentionDays=-1 is invalid");
  });
});

describe("mail retry setting", () => {
  test("passes mailRetrySeconds to notify", async () => {
    const run = await runProgram({ ...SECRETS, mailRetrySeconds: "1200" }, SECRET_KEYS);
    expect(resolveEnv(run, appContainer(run, "notify")).MAIL_RETRY_SECONDS).toBe("1200");
  });

  test("passes notifyPrefetch to notify", async () => {
    const run = await runProgram({ ...SECRETS, notifyPrefetch: "16" }, SECRET_KEYS);
    expect(resolveEnv(run, appContainer(run, "notify")).NOTIFY_PREFETCH).toBe("16");
  });

  test.each([
    ["convertTimeoutSeconds", "86401"],
    ["convertCpuSeconds", "86401"],
    ["convertMaxInputSeconds", "604801"],
  ])("rejects %s=%s, which the converter rejects", async (key, value) => {
    const config = { ...SECRETS, [key]: value };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow(`${key}=${value} is invalid`);
  });

  test("rejects a converter prefetch the converter rejects", async () => {
    const config = { ...SECRETS, converterPrefetch: "65" };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow(
      "converterPrefetch=65 is invalid",
    );
  });

  test("rejects a retry time over 1500 s", async () => {
    const config = { ...SECRETS, mailRetrySeconds: "1501" };
    await expect(runProgram(config, SECRET_KEYS)).rejects.toThrow(
      "mailRetrySeconds=1501 is invalid",
    );
  });
});

describe("stack with the RabbitMQ management UI", () => {
  test("management UI gets its own host", async () => {
    const run = await runProgram({ ...SECRETS, rabbitmqManagementIngress: "true" }, SECRET_KEYS);
    const ingresses = objectsOfKind(run.resources, "Ingress");
    const spec = requireObject(ingresses, "rabbitmq-management").spec as {
      rules: { host: string; http: { paths: { backend: unknown }[] } }[];
    };
    expect(spec.rules[0]?.host).toBe("rabbitmq.mp3converter.com");
    expect(spec.rules[0]?.http.paths[0]?.backend).toEqual({
      service: { name: "rabbitmq", port: { name: "management" } },
    });
  });
});
