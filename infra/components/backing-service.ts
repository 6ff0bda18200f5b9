/**
 * A single-replica stateful server (MySQL, MongoDB, RabbitMQ): a StatefulSet whose data lives on
 * a PersistentVolumeClaim, a headless Service that gives it a stable DNS name, and a Secret for
 * its credentials.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { BackingSizing } from "../config.ts";
import { restrictedContainerSecurity, restrictedPodSecurity } from "./security.ts";

export interface BackingServiceArgs {
  namespace: pulumi.Input<string>;
  sizing: BackingSizing;
  storageClass: string;
  /** UID the image's server runs as; 999 in the official MySQL, MongoDB and RabbitMQ images. */
  userId: number;
  /** Where the image keeps its data; the PersistentVolumeClaim is mounted there. */
  dataPath: string;
  ports: { name: string; port: number }[];
  /** Secret environment variables (credentials), stored in the Secret. */
  secrets: Record<string, pulumi.Input<string>>;
  /** Plain environment variables. */
  env?: Record<string, string>;
  args?: string[];
  /** Passes once the server accepts clients; it also gates start-up (first start initializes). */
  readinessCommand: string[];
  /** Port the liveness probe connects to. */
  livenessPort: string;
}

/** Time a first start may take, which includes initializing an empty data directory. */
const STARTUP_TIMEOUT_SECONDS = 300;
const STARTUP_PERIOD_SECONDS = 5;

/** StatefulSet, headless Service and credentials Secret of one backing server. */
export class BackingService extends pulumi.ComponentResource {
  readonly statefulSet: k8s.apps.v1.StatefulSet;
  readonly service: k8s.core.v1.Service;
  readonly secret: k8s.core.v1.Secret;
  /** DNS name clients in the namespace connect to. */
  readonly host: string;

  constructor(name: string, args: BackingServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mp3converter:index:BackingService", name, {}, opts);
    const labels = {
      "app.kubernetes.io/name": name,
      "app.kubernetes.io/part-of": "mp3converter",
    };
    this.host = name;

    this.secret = new k8s.core.v1.Secret(
      `${name}-credentials`,
      { metadata: { namespace: args.namespace, labels }, type: "Opaque", stringData: args.secrets },
      { parent: this },
    );

    // Headless: the name resolves to the ready pod itself, which is what a single-replica
    // StatefulSet needs, and `<name>-0.<name>` stays stable across restarts.
    this.service = new k8s.core.v1.Service(
      name,
      {
        metadata: { name, namespace: args.namespace, labels },
        spec: {
          clusterIP: "None",
          selector: labels,
          ports: args.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.name })),
        },
      },
      { parent: this },
    );

    this.statefulSet = new k8s.apps.v1.StatefulSet(
      name,
      {
        metadata: { name, namespace: args.namespace, labels },
        spec: {
          serviceName: name,
          replicas: 1,
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: this.#podSpec(name, args) },
          volumeClaimTemplates: [
            {
              metadata: { name: "data", labels },
              spec: {
                accessModes: ["ReadWriteOnce"],
                storageClassName: args.storageClass,
                resources: { requests: { storage: args.sizing.storageSize } },
              },
            },
          ],
        },
      },
      { parent: this, dependsOn: [this.service] },
    );

    this.registerOutputs({
      statefulSet: this.statefulSet.metadata.name,
      service: this.service.metadata.name,
    });
  }

  #podSpec(name: string, args: BackingServiceArgs): k8s.types.input.core.v1.PodSpec {
    const secretEnv = Object.keys(args.secrets).map((key) => ({
      name: key,
      valueFrom: { secretKeyRef: { name: this.secret.metadata.name, key } },
    }));
    const plainEnv = Object.entries(args.env ?? {}).map(([key, value]) => ({ name: key, value }));
    const exec = { command: args.readinessCommand };

    return {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 60,
      securityContext: restrictedPodSecurity(args.userId),
      containers: [
        {
          name,
          image: args.sizing.image,
          imagePullPolicy: "IfNotPresent",
          args: args.args,
          ports: args.ports.map((p) => ({ name: p.name, containerPort: p.port })),
          env: [...secretEnv, ...plainEnv],
          resources: {
            requests: { cpu: args.sizing.cpuRequest, memory: args.sizing.memoryRequest },
            limits: { cpu: args.sizing.cpuLimit, memory: args.sizing.memoryLimit },
          },
          startupProbe: {
            exec,
            periodSeconds: STARTUP_PERIOD_SECONDS,
            timeoutSeconds: 10,
            failureThreshold: STARTUP_TIMEOUT_SECONDS / STARTUP_PERIOD_SECONDS,
          },
          readinessProbe: { exec, periodSeconds: 10, timeoutSeconds: 10, failureThreshold: 3 },
          livenessProbe: {
            tcpSocket: { port: args.livenessPort },
            periodSeconds: 20,
            timeoutSeconds: 5,
            failureThreshold: 3,
          },
          // NOTE: the root filesystem stays writable, because the official images write sockets,
          // PID files and generated config outside their data directory.
          securityContext: restrictedContainerSecurity(args.userId),
          volumeMounts: [{ name: "data", mountPath: args.dataPath }],
        },
      ],
    };
  }
}
