/**
 * Stack configuration, read once. Every key, its type and its default are declared in
 * `Pulumi.yaml`; the defaults here are the same, so a program run without the CLI (the unit
 * tests) gets the values a fresh stack gets.
 */
import * as pulumi from "@pulumi/pulumi";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
const SIGNUP_MODES = ["open", "admin", "closed"] as const;

/** Kubernetes quantity such as `250m`, `1.5`, `512Mi` or `2G`. */
const QUANTITY = /^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;
/** Rolling update bound: a whole number of pods or a percentage. */
const INT_OR_PERCENT = /^(\d+|\d+%)$/;

/** Size and lifetime settings of one app Deployment. */
export interface AppSizing {
  replicas: number;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
  /** Size limit of the `emptyDir` mounted at `/tmp`. */
  tmpSizeLimit: string;
  /** Time Kubernetes waits after SIGTERM before it kills the container. */
  terminationGracePeriodSeconds: number;
}

/** Settings of one in-cluster backing service (MySQL, MongoDB, RabbitMQ). */
export interface BackingSizing {
  image: string;
  storageSize: string;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
}

/** Where the service images go: the local Docker daemon, or a registry they are pushed to. */
export interface ImageSettings {
  /** Registry and path prefix such as `registry.example.com/mp3converter`; absent for local. */
  registry: string | undefined;
  registryUsername: string | undefined;
  registryPassword: pulumi.Output<string> | undefined;
}

export interface StackConfig {
  namespace: string;
  host: string;
  /** Base URL of the public API, from `host` and whether the Ingress has TLS. */
  publicUrl: string;
  ingressTlsSecretName: string | undefined;
  ingressProxyTimeoutSeconds: number;
  rabbitmqManagementHost: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
  storageClass: string;
  rollingUpdate: { maxSurge: number | string; maxUnavailable: number | string };
  images: ImageSettings;
  jwtIssuer: string;
  jwtAudience: string;
  auth: AppSizing & { signupMode: (typeof SIGNUP_MODES)[number] };
  gateway: AppSizing & {
    uploadMaxBytes: number;
    maxActiveJobsPerUser: number;
    jobRetentionDays: number;
  };
  converter: AppSizing & {
    minReplicas: number;
    maxReplicas: number;
    targetCpuUtilizationPercent: number;
    prefetch: number;
    /**
     * CONVERTER_DRAIN_SECONDS. The pod's grace period is this value plus
     * `CONVERTER_STOP_MARGIN_SECONDS`.
     */
    drainSeconds: number;
    convertTimeoutSeconds: number;
    convertCpuSeconds: number;
    convertMaxInputSeconds: number;
  };
  notify: AppSizing & { mailFrom: string; mailRetrySeconds: number; prefetch: number };
  mysql: BackingSizing;
  mongodb: BackingSizing;
  rabbitmq: BackingSizing;
  secrets: StackSecrets;
}

/**
 * Secret stack values. A `*Url` override points a service at a server outside the cluster; when
 * it is set, the matching in-cluster server is not deployed and its password is not needed.
 */
export interface StackSecrets {
  jwtSigningKeys: pulumi.Output<string>;
  mailUrl: pulumi.Output<string>;
  authDatabaseUrl: pulumi.Output<string> | undefined;
  gatewayDatabaseUrl: pulumi.Output<string> | undefined;
  storageUrl: pulumi.Output<string> | undefined;
  brokerUrl: pulumi.Output<string> | undefined;
  mysqlRootPassword: pulumi.Output<string> | undefined;
  mysqlPassword: pulumi.Output<string> | undefined;
  mongodbPassword: pulumi.Output<string> | undefined;
  rabbitmqPassword: pulumi.Output<string> | undefined;
}

/** Raised with one line per invalid or missing stack config value. */
export class StackConfigError extends Error {
  constructor(problems: readonly string[]) {
    super(`invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "StackConfigError";
  }
}

/** Typed reads with defaults that collect every problem before failing. */
class ConfigReader {
  readonly problems: string[] = [];
  readonly #config: pulumi.Config;

  constructor(config: pulumi.Config) {
    this.#config = config;
  }

  string(key: string, fallback: string): string {
    const value = this.#config.get(key)?.trim();
    return value === undefined || value === "" ? fallback : value;
  }

  optionalString(key: string): string | undefined {
    const value = this.#config.get(key)?.trim();
    return value === undefined || value === "" ? undefined : value;
  }

  int(key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const raw = this.optionalString(key);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problems.push(`${key}=${raw} is invalid; expected an integer from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  oneOf<const T extends string>(key: string, values: readonly T[], fallback: T): T {
    const raw = this.optionalString(key);
    if (raw === undefined) return fallback;
    if ((values as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${key}=${raw} is invalid; expected one of ${values.join(", ")}`);
    return fallback;
  }

  quantity(key: string, fallback: string): string {
    const value = this.string(key, fallback);
    if (!QUANTITY.test(value)) {
      this.problems.push(
        `${key}=${value} is invalid; expected a Kubernetes quantity like 250m or 512Mi`,
      );
    }
    return value;
  }

  intOrPercent(key: string, fallback: string): number | string {
    const value = this.string(key, fallback);
    if (!INT_OR_PERCENT.test(value)) {
      this.problems.push(
        `${key}=${value} is invalid; expected a pod count like 1 or a percentage like 25%`,
      );
      return value;
    }
    // Kubernetes rejects a plain number written as a string, so counts become numbers.
    return value.endsWith("%") ? value : Number(value);
  }

  bool(key: string, fallback: boolean): boolean {
    const raw = this.optionalString(key);
    if (raw === undefined) return fallback;
    if (raw === "true" || raw === "false") return raw === "true";
    this.problems.push(`${key}=${raw} is invalid; expected true or false`);
    return fallback;
  }

  /**
   * A secret that must be set; `pulumi config set --secret KEY VALUE` stores it. The plain value
   * is only tested for emptiness, because `Pulumi.yaml` declares some secrets with an empty
   * default and `requireSecret` accepts an empty string.
   */
  requiredSecret(key: string, example: string): pulumi.Output<string> {
    if (this.optionalString(key) === undefined) {
      this.problems.push(
        `${key} is missing; set it with pulumi config set --secret ${key} ${example}`,
      );
      return pulumi.secret("");
    }
    return this.#config.requireSecret(key);
  }

  /**
   * A secret that may be absent. The plain value is only tested for emptiness, because whether it
   * is set decides which resources exist.
   */
  optionalSecret(key: string): pulumi.Output<string> | undefined {
    return this.optionalString(key) === undefined ? undefined : this.#config.requireSecret(key);
  }
}

/** Reads and checks the whole stack configuration; throws `StackConfigError` on any problem. */
export function readStackConfig(config = new pulumi.Config()): StackConfig {
  const read = new ConfigReader(config);
  const host = read.string("host", "mp3converter.com");
  const ingressTlsSecretName = read.optionalString("ingressTlsSecretName");
  const managementIngress = read.bool("rabbitmqManagementIngress", false);

  const stack: StackConfig = {
    namespace: read.string("namespace", "mp3converter"),
    host,
    publicUrl: `${ingressTlsSecretName ? "https" : "http"}://${host}`,
    ingressTlsSecretName,
    ingressProxyTimeoutSeconds: read.int("ingressProxyTimeoutSeconds", 600, 1, 86_400),
    rabbitmqManagementHost: managementIngress
      ? read.string("rabbitmqManagementHost", "rabbitmq.mp3converter.com")
      : undefined,
    logLevel: read.oneOf("logLevel", LOG_LEVELS, "info"),
    storageClass: read.string("storageClass", "standard"),
    rollingUpdate: {
      maxSurge: read.intOrPercent("rollingMaxSurge", "1"),
      maxUnavailable: read.intOrPercent("rollingMaxUnavailable", "0"),
    },
    images: {
      registry: read.optionalString("imageRegistry")?.replace(/\/+$/, ""),
      registryUsername: read.optionalString("registryUsername"),
      registryPassword: read.optionalSecret("registryPassword"),
    },
    jwtIssuer: read.string("jwtIssuer", "mp3converter-auth"),
    jwtAudience: read.string("jwtAudience", "mp3converter"),
    auth: {
      ...readAppSizing(read, "auth", APP_DEFAULTS.auth),
      signupMode: read.oneOf("signupMode", SIGNUP_MODES, "open"),
    },
    gateway: {
      ...readAppSizing(read, "gateway", APP_DEFAULTS.gateway),
      uploadMaxBytes: read.int("uploadMaxBytes", 524_288_000, 1),
      maxActiveJobsPerUser: read.int("maxActiveJobsPerUser", 10, 0, 1_000_000),
      jobRetentionDays: read.int("jobRetentionDays", 0, 0, 36_500),
    },
    converter: readConverter(read),
    notify: {
      ...readAppSizing(read, "notify", APP_DEFAULTS.notify),
      mailFrom: read.string("mailFrom", "mp3converter <no-reply@mp3converter.local>"),
      // The bounds of MAIL_RETRY_SECONDS in svc-notify/src/config.ts.
      mailRetrySeconds: read.int("mailRetrySeconds", 600, 0, 1500),
      // The bounds of NOTIFY_PREFETCH in svc-notify/src/config.ts.
      prefetch: read.int("notifyPrefetch", 4, 1, 1000),
    },
    mysql: readBackingSizing(read, "mysql", BACKING_DEFAULTS.mysql),
    mongodb: readBackingSizing(read, "mongodb", BACKING_DEFAULTS.mongodb),
    rabbitmq: readBackingSizing(read, "rabbitmq", BACKING_DEFAULTS.rabbitmq),
    secrets: readSecrets(read),
  };

  if (stack.rabbitmqManagementHost && stack.secrets.brokerUrl) {
    read.problems.push(
      "rabbitmqManagementIngress is true but brokerUrl is set, so no RabbitMQ runs in the " +
        "cluster; set rabbitmqManagementIngress to false",
    );
  }
  if (stack.images.registryPassword && !stack.images.registryUsername) {
    read.problems.push("registryPassword is set but registryUsername is not; set both or neither");
  }
  if (read.problems.length > 0) throw new StackConfigError(read.problems);
  return stack;
}

type AppName = "auth" | "gateway" | "converter" | "notify";

/**
 * Default of `converterDrainSeconds`, the time a stopping converter lets running conversions
 * finish before it kills ffmpeg and requeues their jobs. It is sized for a typical conversion,
 * not for the longest one (three tool runs of up to `convertTimeoutSeconds`). A grace period
 * that long would hold every rolling update and node drain. The cluster autoscaler cuts it to
 * 600 s anyway (its --max-graceful-termination-sec default). A requeued job starts over on
 * another pod, which the converter's idempotency makes safe.
 */
const DEFAULT_CONVERTER_DRAIN_SECONDS = 60;

/**
 * Time the converter needs after its drain. ffmpeg gets 2 s after SIGTERM before SIGKILL, and
 * closing the RabbitMQ connection may take 5 s. The rest covers the requeue and closing storage.
 * NOTE: the abort does not cut short a video download or an MP3 upload in progress, so a stop
 * during a long transfer can outlast the margin. Kubernetes then kills the pod, and RabbitMQ
 * redelivers the unacknowledged message when the connection drops, which ends the same way.
 */
export const CONVERTER_STOP_MARGIN_SECONDS = 15;

/**
 * Defaults sized so that the whole system, with the backing services and minikube's own pods,
 * fits a `minikube start --cpus 4 --memory 8g` node by requests. Limits allow bursts above that.
 */
const APP_DEFAULTS: Record<AppName, AppSizing> = {
  auth: {
    replicas: 2,
    cpuRequest: "100m",
    cpuLimit: "500m",
    memoryRequest: "128Mi",
    memoryLimit: "256Mi",
    tmpSizeLimit: "64Mi",
    terminationGracePeriodSeconds: 30,
  },
  // Uploads stream through the gateway for minutes, so it gets time to finish them on shutdown.
  gateway: {
    replicas: 2,
    cpuRequest: "100m",
    cpuLimit: "1000m",
    memoryRequest: "128Mi",
    memoryLimit: "512Mi",
    tmpSizeLimit: "64Mi",
    terminationGracePeriodSeconds: 120,
  },
  converter: {
    replicas: 4,
    cpuRequest: "200m",
    cpuLimit: "1000m",
    memoryRequest: "256Mi",
    memoryLimit: "1Gi",
    tmpSizeLimit: "2Gi",
    // Not a config key: readConverter derives it from converterDrainSeconds.
    terminationGracePeriodSeconds: DEFAULT_CONVERTER_DRAIN_SECONDS + CONVERTER_STOP_MARGIN_SECONDS,
  },
  notify: {
    replicas: 4,
    cpuRequest: "50m",
    cpuLimit: "250m",
    memoryRequest: "96Mi",
    memoryLimit: "256Mi",
    tmpSizeLimit: "64Mi",
    terminationGracePeriodSeconds: 60,
  },
};

/**
 * Reads the sizing keys of `app`. With `gracePeriodSeconds`, the app has no
 * `TerminationGracePeriodSeconds` key and gets that value.
 */
function readAppSizing(
  read: ConfigReader,
  app: AppName,
  defaults: AppSizing,
  gracePeriodSeconds?: number,
): AppSizing {
  return {
    replicas: read.int(`${app}Replicas`, defaults.replicas, 0, 100),
    cpuRequest: read.quantity(`${app}CpuRequest`, defaults.cpuRequest),
    cpuLimit: read.quantity(`${app}CpuLimit`, defaults.cpuLimit),
    memoryRequest: read.quantity(`${app}MemoryRequest`, defaults.memoryRequest),
    memoryLimit: read.quantity(`${app}MemoryLimit`, defaults.memoryLimit),
    tmpSizeLimit: read.quantity(`${app}TmpSizeLimit`, defaults.tmpSizeLimit),
    terminationGracePeriodSeconds:
      gracePeriodSeconds ??
      read.int(`${app}TerminationGracePeriodSeconds`, defaults.terminationGracePeriodSeconds, 1),
  };
}

function readConverter(read: ConfigReader): StackConfig["converter"] {
  const drainSeconds = read.int("converterDrainSeconds", DEFAULT_CONVERTER_DRAIN_SECONDS, 0, 3600);
  // The grace period follows the drain, so Kubernetes waits for the requeue after the drain and
  // not much longer.
  const grace = drainSeconds + CONVERTER_STOP_MARGIN_SECONDS;
  const sizing = readAppSizing(read, "converter", APP_DEFAULTS.converter, grace);
  if (read.optionalString("converterTerminationGracePeriodSeconds") !== undefined) {
    read.problems.push(
      "converterTerminationGracePeriodSeconds is not a setting; the converter's grace period " +
        `is converterDrainSeconds plus ${CONVERTER_STOP_MARGIN_SECONDS} s, so remove the key ` +
        "and set converterDrainSeconds instead",
    );
  }
  // The bounds below are those of svc-converter/src/config.ts, which stops at start-up on a
  // value outside them.
  const convertTimeoutSeconds = read.int("convertTimeoutSeconds", 1800, 1, 86_400);
  const minReplicas = read.int("converterMinReplicas", 4, 1, 100);
  const maxReplicas = read.int("converterMaxReplicas", 8, 1, 100);
  if (maxReplicas < minReplicas) {
    read.problems.push(
      `converterMaxReplicas=${maxReplicas} is invalid; it must be at least converterMinReplicas=${minReplicas}`,
    );
  }
  return {
    ...sizing,
    minReplicas,
    maxReplicas,
    targetCpuUtilizationPercent: read.int("converterTargetCpuUtilizationPercent", 70, 1, 100),
    // The bounds of CONVERTER_PREFETCH in svc-converter/src/config.ts; a larger value would pass
    // here and then stop every converter pod at start-up.
    prefetch: read.int("converterPrefetch", 1, 1, 64),
    drainSeconds,
    convertTimeoutSeconds,
    convertCpuSeconds: read.int("convertCpuSeconds", 1800, 1, 86_400),
    convertMaxInputSeconds: read.int("convertMaxInputSeconds", 14_400, 1, 7 * 86_400),
  };
}

type BackingName = "mysql" | "mongodb" | "rabbitmq";

// NOTE: the tags are pinned, but not to digests; for production, append `@sha256:…` digests
// taken from the registry so that a re-pushed tag cannot change what runs.
const BACKING_DEFAULTS: Record<BackingName, BackingSizing> = {
  mysql: {
    image: "mysql:8.4.2",
    storageSize: "2Gi",
    cpuRequest: "250m",
    cpuLimit: "1000m",
    memoryRequest: "512Mi",
    memoryLimit: "1Gi",
  },
  mongodb: {
    image: "mongo:7.0.14",
    storageSize: "10Gi",
    cpuRequest: "200m",
    cpuLimit: "1000m",
    memoryRequest: "384Mi",
    memoryLimit: "1Gi",
  },
  rabbitmq: {
    image: "rabbitmq:3.13.7-management",
    storageSize: "1Gi",
    cpuRequest: "200m",
    cpuLimit: "1000m",
    memoryRequest: "256Mi",
    memoryLimit: "768Mi",
  },
};

function readBackingSizing(
  read: ConfigReader,
  name: BackingName,
  defaults: BackingSizing,
): BackingSizing {
  return {
    image: read.string(`${name}Image`, defaults.image),
    storageSize: read.quantity(`${name}StorageSize`, defaults.storageSize),
    cpuRequest: read.quantity(`${name}CpuRequest`, defaults.cpuRequest),
    cpuLimit: read.quantity(`${name}CpuLimit`, defaults.cpuLimit),
    memoryRequest: read.quantity(`${name}MemoryRequest`, defaults.memoryRequest),
    memoryLimit: read.quantity(`${name}MemoryLimit`, defaults.memoryLimit),
  };
}

function readSecrets(read: ConfigReader): StackSecrets {
  const authDatabaseUrl = read.optionalSecret("authDatabaseUrl");
  const gatewayDatabaseUrl = read.optionalSecret("gatewayDatabaseUrl");
  const storageUrl = read.optionalSecret("storageUrl");
  const brokerUrl = read.optionalSecret("brokerUrl");
  const needsMysql = !authDatabaseUrl || !gatewayDatabaseUrl;

  return {
    jwtSigningKeys: read.requiredSecret("jwtSigningKeys", '"$(bun run --silent jwt:generate-key)"'),
    mailUrl: read.requiredSecret("mailUrl", "smtp://USER:PASSWORD@smtp.example.com:587"),
    authDatabaseUrl,
    gatewayDatabaseUrl,
    storageUrl,
    brokerUrl,
    mysqlRootPassword: needsMysql
      ? read.requiredSecret("mysqlRootPassword", "PASSWORD")
      : undefined,
    mysqlPassword: needsMysql ? read.requiredSecret("mysqlPassword", "PASSWORD") : undefined,
    mongodbPassword: storageUrl ? undefined : read.requiredSecret("mongodbPassword", "PASSWORD"),
    rabbitmqPassword: brokerUrl ? undefined : read.requiredSecret("rabbitmqPassword", "PASSWORD"),
  };
}
