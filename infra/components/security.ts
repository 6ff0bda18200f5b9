/**
 * Security contexts that meet the Kubernetes "restricted" Pod Security Standard: a numeric
 * non-root user, no privilege escalation, no capabilities and the runtime's default seccomp
 * profile.
 */
import type * as k8s from "@pulumi/kubernetes";

/** Pod-level context; `fsGroup` makes mounted volumes writable by `userId`. */
export function restrictedPodSecurity(userId: number): k8s.types.input.core.v1.PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: userId,
    runAsGroup: userId,
    fsGroup: userId,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Container-level context; callers add `readOnlyRootFilesystem` where the image allows it. */
export function restrictedContainerSecurity(
  userId: number,
): k8s.types.input.core.v1.SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: userId,
    runAsGroup: userId,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}
