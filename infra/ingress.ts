/**
 * The ingress-nginx Ingress that makes the gateway public, and optionally the RabbitMQ
 * management UI on a second host.
 */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config.ts";

const MIB = 1024 * 1024;

/**
 * Room for the multipart boundaries and part headers around the file. The gateway's
 * `UPLOAD_MAX_BYTES` counts the file only, so nginx allows this much more and the gateway
 * rejects an oversized upload with its own JSON 413 error instead of nginx's HTML page.
 */
const MULTIPART_ALLOWANCE_BYTES = MIB;

/**
 * Converts the gateway's upload limit to the `proxy-body-size` annotation: a whole number of
 * megabytes with nginx's `m` suffix (1m = 1 MiB), rounded up, plus the multipart allowance.
 */
export function nginxBodySize(uploadMaxBytes: number): string {
  return `${Math.ceil((uploadMaxBytes + MULTIPART_ALLOWANCE_BYTES) / MIB)}m`;
}

/** Parses an nginx size (`1024`, `8k`, `500m`, `1g`) into bytes. */
export function parseNginxSize(size: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(size);
  if (!match) throw new Error(`invalid nginx size ${size}; expected digits and k, m or g`);
  const units: Record<string, number> = { "": 1, k: 1024, m: MIB, g: 1024 * MIB };
  return Number(match[1]) * (units[(match[2] ?? "").toLowerCase()] ?? 1);
}

export function deployIngresses(
  config: StackConfig,
  namespace: pulumi.Input<string>,
  opts: pulumi.CustomResourceOptions,
): k8s.networking.v1.Ingress[] {
  const timeout = String(config.ingressProxyTimeoutSeconds);
  const tls = config.ingressTlsSecretName
    ? [{ hosts: [config.host], secretName: config.ingressTlsSecretName }]
    : undefined;

  const gateway = new k8s.networking.v1.Ingress(
    "gateway",
    {
      metadata: {
        name: "gateway",
        namespace,
        annotations: {
          "nginx.ingress.kubernetes.io/proxy-body-size": nginxBodySize(
            config.gateway.uploadMaxBytes,
          ),
          // Uploads stream straight to the gateway instead of being spooled to nginx's disk
          // first, and a long upload or download is not cut off by the 60 s default timeouts.
          "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
          "nginx.ingress.kubernetes.io/proxy-read-timeout": timeout,
          "nginx.ingress.kubernetes.io/proxy-send-timeout": timeout,
        },
      },
      spec: {
        ingressClassName: "nginx",
        tls,
        rules: [{ host: config.host, http: { paths: [backendPath("gateway", "http")] } }],
      },
    },
    opts,
  );
  if (!config.rabbitmqManagementHost) return [gateway];

  // NOTE: the management UI is protected by the RabbitMQ user's password only; expose it on a
  // cluster reachable by its operators alone.
  const management = new k8s.networking.v1.Ingress(
    "rabbitmq-management",
    {
      metadata: { name: "rabbitmq-management", namespace },
      spec: {
        ingressClassName: "nginx",
        rules: [
          {
            host: config.rabbitmqManagementHost,
            http: { paths: [backendPath("rabbitmq", "management")] },
          },
        ],
      },
    },
    opts,
  );
  return [gateway, management];
}

function backendPath(service: string, port: string): k8s.types.input.networking.v1.HTTPIngressPath {
  return {
    path: "/",
    pathType: "Prefix",
    backend: { service: { name: service, port: { name: port } } },
  };
}
