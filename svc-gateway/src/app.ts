/** The gateway's Elysia app: the public API, wired to dependencies passed in. */
import { healthRoutes, type ReadinessChecks } from "@mp3converter/lib/health";
import { createHttpApp } from "@mp3converter/lib/http";
import type { Logger } from "@mp3converter/lib/log";
import type { Broker } from "@mp3converter/lib/ports/broker";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import type { TokenVerifier } from "@mp3converter/lib/tokens";
import { forwardToAuth } from "./auth-proxy.ts";
import { authenticate } from "./bearer.ts";
import { downloadMp3, parseFid } from "./download.ts";
import { deleteJob, getJob, listJobs, parseJobListQuery } from "./job-routes.ts";
import type { JobStore } from "./jobs-store.ts";
import { acceptUpload } from "./upload.ts";

export interface GatewayAppDeps {
  logger: Logger;
  jobs: JobStore;
  store: BlobStore;
  broker: Broker;
  verifier: TokenVerifier;
  /** Checks of `/readyz`, by dependency name. */
  readiness: ReadinessChecks;
  authUrl: string;
  publicUrl: string;
  uploadMaxBytes: number;
  /** Maximum number of queued or converting jobs per user. A value of 0 turns the limit off. */
  maxActiveJobsPerUser: number;
  videoQueue: string;
  trustProxy: boolean;
}

/** Creates the gateway app; tests call `app.handle(request)` on it. */
export function createGatewayApp(deps: GatewayAppDeps) {
  const proxy = { authUrl: deps.authUrl, trustProxy: deps.trustProxy, logger: deps.logger };
  const jobRoutes = { jobs: deps.jobs, publicUrl: deps.publicUrl };

  return createHttpApp("gateway", deps.logger)
    .use(healthRoutes(deps.logger, deps.readiness))
    .post(
      "/login",
      ({ request, requestId }) => forwardToAuth(request, "/login", requestId, proxy),
      {
        parse: "none",
      },
    )
    .post(
      "/signup",
      ({ request, requestId }) => forwardToAuth(request, "/signup", requestId, proxy),
      { parse: "none" },
    )
    .post(
      "/upload",
      async ({ request, requestId, log, set }) => {
        const owner = await authenticate(request, deps.verifier);
        const accepted = await acceptUpload(request, owner, { requestId, log }, deps);
        set.status = 202;
        set.headers.location = accepted.status_url;
        return accepted;
      },
      { parse: "none" },
    )
    .get("/jobs", async ({ request }) => {
      const owner = await authenticate(request, deps.verifier);
      const query = parseJobListQuery(new URL(request.url));
      return listJobs(query, owner.userId, jobRoutes);
    })
    .get("/jobs/:id", async ({ request, params }) => {
      const owner = await authenticate(request, deps.verifier);
      return getJob(params.id, owner.userId, jobRoutes);
    })
    .delete("/jobs/:id", async ({ request, params, log, set }) => {
      const owner = await authenticate(request, deps.verifier);
      await deleteJob(params.id, owner.userId, { ...jobRoutes, store: deps.store, log });
      set.status = 204;
      return null;
    })
    .get("/download", async ({ request }) => {
      const owner = await authenticate(request, deps.verifier);
      const fid = parseFid(new URL(request.url));
      return downloadMp3(request, fid, owner.userId, deps);
    });
}

export type GatewayApp = ReturnType<typeof createGatewayApp>;
