/**
 * Every resource of the mp3converter stack: the namespace, the four service images and
 * Deployments, the backing servers and the Ingress.
 */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { type ConnectionUrls, deployBackingServices } from "./backing.ts";
import { AppService } from "./components/app-service.ts";
import { buildServiceImage } from "./components/image.ts";
import type { StackConfig } from "./config.ts";
import { deployIngresses } from "./ingress.ts";

/** Ports of the services, which their own config defaults to as well. */
export const PORTS = { auth: 5000, gateway: 8080, converterHealth: 8081, notifyHealth: 8082 };

export interface StackOutputs {
  gatewayUrl: string;
  images: Record<"auth" | "gateway" | "converter" | "notify", pulumi.Output<string>>;
}

/** Declares the whole stack from `config`. */
export function deployStack(config: StackConfig): StackOutputs {
  const namespace = new k8s.core.v1.Namespace("namespace", {
    metadata: { name: config.namespace, labels: { "app.kubernetes.io/part-of": "mp3converter" } },
  });
  const ns = namespace.metadata.name;
  const urls = deployBackingServices(config, ns, { dependsOn: [namespace] });

  const images = {
    auth: buildServiceImage("svc-auth", config.images).reference,
    gateway: buildServiceImage("svc-gateway", config.images).reference,
    converter: buildServiceImage("svc-converter", config.images).reference,
    notify: buildServiceImage("svc-notify", config.images).reference,
  };
  // The apps start after their servers are ready, so that `pulumi up` waits on one thing at a
  // time and the apps' readiness probes pass soon after they start.
  const appOpts = { dependsOn: [namespace, ...urls.servers] };

  const auth = deployAuth(config, ns, images.auth, urls, appOpts);
  deployGateway(config, ns, images.gateway, urls, { dependsOn: [...appOpts.dependsOn, auth] });
  deployConverter(config, ns, images.converter, urls, appOpts);
  deployNotify(config, ns, images.notify, urls, appOpts);
  deployIngresses(config, ns, { dependsOn: [namespace] });

  return { gatewayUrl: config.publicUrl, images };
}

type Opts = pulumi.ComponentResourceOptions;
type Text = pulumi.Input<string>;

function common(config: StackConfig, ns: Text) {
  return { namespace: ns, rollingUpdate: config.rollingUpdate };
}

function deployAuth(c: StackConfig, ns: Text, image: Text, urls: ConnectionUrls, opts: Opts) {
  return new AppService(
    "auth",
    {
      ...common(c, ns),
      image,
      sizing: c.auth,
      healthPort: PORTS.auth,
      servicePort: PORTS.auth,
      settings: {
        PORT: String(PORTS.auth),
        LOG_LEVEL: c.logLevel,
        JWT_ISSUER: c.jwtIssuer,
        JWT_AUDIENCE: c.jwtAudience,
        SIGNUP_MODE: c.auth.signupMode,
        // Auth is reached through the gateway, which forwards the client address.
        TRUST_PROXY: "true",
      },
      secrets: { DATABASE_URL: urls.authDatabaseUrl, JWT_SIGNING_KEYS: c.secrets.jwtSigningKeys },
    },
    opts,
  );
}

function deployGateway(c: StackConfig, ns: Text, image: Text, urls: ConnectionUrls, opts: Opts) {
  return new AppService(
    "gateway",
    {
      ...common(c, ns),
      image,
      sizing: c.gateway,
      healthPort: PORTS.gateway,
      servicePort: PORTS.gateway,
      settings: {
        PORT: String(PORTS.gateway),
        LOG_LEVEL: c.logLevel,
        AUTH_URL: `http://auth:${PORTS.auth}`,
        PUBLIC_URL: c.publicUrl,
        JWT_ISSUER: c.jwtIssuer,
        JWT_AUDIENCE: c.jwtAudience,
        UPLOAD_MAX_BYTES: String(c.gateway.uploadMaxBytes),
        MAX_ACTIVE_JOBS_PER_USER: String(c.gateway.maxActiveJobsPerUser),
        JOB_RETENTION_DAYS: String(c.gateway.jobRetentionDays),
        // The gateway is reached through ingress-nginx, which appends the client address to
        // X-Forwarded-For.
        TRUST_PROXY: "true",
      },
      secrets: {
        DATABASE_URL: urls.gatewayDatabaseUrl,
        STORAGE_URL: urls.storageUrl,
        BROKER_URL: urls.brokerUrl,
      },
    },
    opts,
  );
}

function deployConverter(c: StackConfig, ns: Text, image: Text, urls: ConnectionUrls, opts: Opts) {
  const { converter } = c;
  return new AppService(
    "converter",
    {
      ...common(c, ns),
      image,
      sizing: converter,
      healthPort: PORTS.converterHealth,
      settings: {
        HEALTH_PORT: String(PORTS.converterHealth),
        LOG_LEVEL: c.logLevel,
        CONVERTER_PREFETCH: String(converter.prefetch),
        CONVERTER_DRAIN_SECONDS: String(converter.drainSeconds),
        CONVERT_TIMEOUT_SECONDS: String(converter.convertTimeoutSeconds),
        CONVERT_CPU_SECONDS: String(converter.convertCpuSeconds),
        CONVERT_MAX_INPUT_SECONDS: String(converter.convertMaxInputSeconds),
        // The only writable path in the container: the emptyDir sized by converterTmpSizeLimit.
        WORK_DIR: "/tmp",
      },
      secrets: { BROKER_URL: urls.brokerUrl, STORAGE_URL: urls.storageUrl },
      autoscaling: {
        minReplicas: converter.minReplicas,
        maxReplicas: converter.maxReplicas,
        targetCpuUtilizationPercent: converter.targetCpuUtilizationPercent,
      },
    },
    opts,
  );
}

function deployNotify(c: StackConfig, ns: Text, image: Text, urls: ConnectionUrls, opts: Opts) {
  return new AppService(
    "notify",
    {
      ...common(c, ns),
      image,
      sizing: c.notify,
      healthPort: PORTS.notifyHealth,
      settings: {
        HEALTH_PORT: String(PORTS.notifyHealth),
        LOG_LEVEL: c.logLevel,
        MAIL_FROM: c.notify.mailFrom,
        MAIL_RETRY_SECONDS: String(c.notify.mailRetrySeconds),
        NOTIFY_PREFETCH: String(c.notify.prefetch),
        PUBLIC_URL: c.publicUrl,
      },
      secrets: { BROKER_URL: urls.brokerUrl, MAIL_URL: c.secrets.mailUrl },
    },
    opts,
  );
}
