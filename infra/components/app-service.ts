/**
 * One of the four app services on Kubernetes: a Deployment with a ConfigMap for plain settings, a
 * Secret for secret ones, and optionally a ClusterIP Service and a CPU autoscaler.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { AppSizing } from "../config.ts";
import { restrictedContainerSecurity, restrictedPodSecurity } from "./security.ts";

/** UID and GID the service images run as; the Dockerfiles create this user. */
export const APP_USER_ID = 10001;

/**
 * Seconds a pod behind a Service keeps serving after Kubernetes decides to stop it, before the
 * app gets SIGTERM. Endpoint removal reaches kube-proxy and the ingress controller a moment after
 * the pod starts terminating, and requests sent meanwhile would find the port closed.
 */
export const ENDPOINT_REMOVAL_DELAY_SECONDS = 5;

export interface AppServiceArgs {
  namespace: pulumi.Input<string>;
  /** Container image reference, by content tag or digest. */
  image: pulumi.Input<string>;
  sizing: AppSizing;
  rollingUpdate: { maxSurge: number | string; maxUnavailable: number | string };
  /** Port that serves `/healthz` and `/readyz`. */
  healthPort: number;
  /** Port of the ClusterIP Service named after the app; no Service when absent. */
  servicePort?: number;
  /** Plain environment variables, stored in the ConfigMap. */
  settings: Record<string, pulumi.Input<string>>;
  /** Secret environment variables, stored in the Secret. */
  secrets: Record<string, pulumi.Input<string>>;
  /** CPU autoscaling; the Deployment's replica count is then the HPA's to change. */
  autoscaling?: { minReplicas: number; maxReplicas: number; targetCpuUtilizationPercent: number };
}

/** Deployment, ConfigMap, Secret, optional Service and optional HPA of one app service. */
export class AppService extends pulumi.ComponentResource {
  readonly deployment: k8s.apps.v1.Deployment;
  readonly configMap: k8s.core.v1.ConfigMap;
  readonly secret: k8s.core.v1.Secret;
  readonly service: k8s.core.v1.Service | undefined;
  readonly autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler | undefined;

  constructor(name: string, args: AppServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mp3converter:index:AppService", name, {}, opts);
    const labels = {
      "app.kubernetes.io/name": name,
      "app.kubernetes.io/part-of": "mp3converter",
    };

    // The ConfigMap and the Secret are auto-named, so that a changed value gives a new name and
    // the Deployment rolls its pods to pick it up.
    this.configMap = new k8s.core.v1.ConfigMap(
      `${name}-settings`,
      { metadata: { namespace: args.namespace, labels }, data: args.settings },
      { parent: this },
    );
    this.secret = new k8s.core.v1.Secret(
      `${name}-secrets`,
      { metadata: { namespace: args.namespace, labels }, type: "Opaque", stringData: args.secrets },
      { parent: this },
    );

    this.deployment = new k8s.apps.v1.Deployment(
      name,
      {
        metadata: { name, namespace: args.namespace, labels },
        spec: {
          replicas: args.sizing.replicas,
          selector: { matchLabels: labels },
          strategy: { type: "RollingUpdate", rollingUpdate: args.rollingUpdate },
          template: {
            metadata: { labels },
            spec: this.#podSpec(name, args),
          },
        },
      },
      { parent: this, ignoreChanges: args.autoscaling ? ["spec.replicas"] : [] },
    );

    if (args.servicePort !== undefined) {
      this.service = new k8s.core.v1.Service(
        name,
        {
          metadata: { name, namespace: args.namespace, labels },
          spec: {
            type: "ClusterIP",
            selector: labels,
            ports: [{ name: "http", port: args.servicePort, targetPort: "http" }],
          },
        },
        { parent: this },
      );
    }

    if (args.autoscaling) {
      this.autoscaler = new k8s.autoscaling.v2.HorizontalPodAutoscaler(
        name,
        {
          metadata: { name, namespace: args.namespace, labels },
          spec: {
            scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name },
            minReplicas: args.autoscaling.minReplicas,
            maxReplicas: args.autoscaling.maxReplicas,
            metrics: [
              {
                type: "Resource",
                resource: {
                  name: "cpu",
                  target: {
                    type: "Utilization",
                    averageUtilization: args.autoscaling.targetCpuUtilizationPercent,
                  },
                },
              },
            ],
          },
        },
        { parent: this, dependsOn: [this.deployment] },
      );
    }

    this.registerOutputs({
      deployment: this.deployment.metadata.name,
      service: this.service?.metadata.name,
    });
  }

  #podSpec(name: string, args: AppServiceArgs): k8s.types.input.core.v1.PodSpec {
    const { sizing } = args;
    const portName = args.servicePort === undefined ? "health" : "http";
    return {
      // The apps call no Kubernetes API, and service links would add stray *_PORT variables.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: sizing.terminationGracePeriodSeconds,
      securityContext: restrictedPodSecurity(APP_USER_ID),
      containers: [
        {
          name,
          image: args.image,
          imagePullPolicy: "IfNotPresent",
          ports: [{ name: portName, containerPort: args.healthPort }],
          envFrom: [
            { configMapRef: { name: this.configMap.metadata.name } },
            { secretRef: { name: this.secret.metadata.name } },
          ],
          resources: {
            requests: { cpu: sizing.cpuRequest, memory: sizing.memoryRequest },
            limits: { cpu: sizing.cpuLimit, memory: sizing.memoryLimit },
          },
          readinessProbe: {
            httpGet: { path: "/readyz", port: portName },
            periodSeconds: 5,
            timeoutSeconds: 3,
            failureThreshold: 3,
          },
          // /healthz checks only the process, so a slow database never restarts the app.
          livenessProbe: {
            httpGet: { path: "/healthz", port: portName },
            initialDelaySeconds: 10,
            periodSeconds: 10,
            timeoutSeconds: 3,
            failureThreshold: 3,
          },
          securityContext: {
            ...restrictedContainerSecurity(APP_USER_ID),
            readOnlyRootFilesystem: true,
          },
          volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
          // The delay counts against the grace period, which the sizing defaults leave room for.
          lifecycle:
            args.servicePort === undefined
              ? undefined
              : {
                  preStop: { exec: { command: ["sleep", String(ENDPOINT_REMOVAL_DELAY_SECONDS)] } },
                },
        },
      ],
      volumes: [{ name: "tmp", emptyDir: { sizeLimit: sizing.tmpSizeLimit } }],
    };
  }
}
