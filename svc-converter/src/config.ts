import { tmpdir } from "node:os";
import { type Env, type EnvReader, loadConfig } from "@mp3converter/lib/config";
import { LOG_LEVELS } from "@mp3converter/lib/log";
import { DEFAULT_QUEUES } from "@mp3converter/lib/messages";

/** Settings of the converter service, read once at start-up. */
export interface ConverterConfig {
  logLevel: string;
  brokerUrl: string;
  storageUrl: string;
  videoQueue: string;
  mp3Queue: string;
  jobEventsQueue: string;
  /** Port of `/healthz` and `/readyz`, where 0 picks a free port. */
  healthPort: number;
  /** Address the health server binds; all interfaces by default, because the kubelet probes it. */
  healthHost: string;
  /** Maximum number of videos converted at once by this process. */
  prefetch: number;
  ffmpegPath: string;
  ffprobePath: string;
  /** Inputs whose probed duration is longer are rejected; outputs are cut there too. */
  maxInputSeconds: number;
  /** Wall-clock limit for one ffmpeg or ffprobe run. */
  timeoutSeconds: number;
  /** CPU-time limit for one ffmpeg or ffprobe run, applied with prlimit. */
  cpuSeconds: number;
  /** LAME VBR quality, 0 (best, largest) to 9 (smallest). */
  mp3Quality: number;
  /** Directory for the downloaded video and the MP3 of each job. */
  workDir: string;
  /**
   * Time the running conversions get to finish after a stop signal. Those still running then
   * are killed, and their messages go back to the queue for another converter.
   */
  drainSeconds: number;
}

/** Upper bound of `CONVERTER_PREFETCH`; each conversion holds one ffmpeg process and a temp file. */
const MAX_PREFETCH = 64;

/** Upper bound of the time settings: one day. */
const MAX_SECONDS = 86_400;

/**
 * Default of CONVERTER_DRAIN_SECONDS. A stop waits for a typical conversion, not for the longest
 * one. Three tool runs of up to CONVERT_TIMEOUT_SECONDS each (90 minutes with the defaults)
 * would hold rolling updates, node drains and scale-downs for as long. The cluster autoscaler
 * waits at most 600 s for a pod when it removes a node (its --max-graceful-termination-sec
 * default), so a long conversion must survive being stopped anyway. It does, because the handler
 * is idempotent per job id. A killed conversion loses only its progress, and its redelivered
 * message starts it over on another converter.
 */
const DEFAULT_DRAIN_SECONDS = 60;

/** Upper bound of CONVERTER_DRAIN_SECONDS, so a typo cannot stall every rollout for a day. */
const MAX_DRAIN_SECONDS = 3600;

/** Reads the converter settings and throws `ConfigError` naming every bad variable. */
export function readConverterConfig(env: Env): Readonly<ConverterConfig> {
  return loadConfig(describeConverterConfig, env);
}

function describeConverterConfig(env: EnvReader): ConverterConfig {
  return {
    logLevel: env.oneOf("LOG_LEVEL", LOG_LEVELS, { default: "info" }),
    brokerUrl: env.url("BROKER_URL", ["amqp", "amqps", "memory"]),
    storageUrl: env.url("STORAGE_URL", ["mongodb", "mongodb+srv", "file"]),
    videoQueue: env.string("VIDEO_QUEUE", { default: DEFAULT_QUEUES.video }),
    mp3Queue: env.string("MP3_QUEUE", { default: DEFAULT_QUEUES.mp3 }),
    jobEventsQueue: env.string("JOB_EVENTS_QUEUE", { default: DEFAULT_QUEUES.jobEvents }),
    healthPort: env.int("HEALTH_PORT", { default: 8081, min: 0, max: 65535 }),
    healthHost: env.string("HEALTH_HOST", { default: "0.0.0.0" }),
    prefetch: env.int("CONVERTER_PREFETCH", { default: 1, min: 1, max: MAX_PREFETCH }),
    ffmpegPath: env.string("FFMPEG_PATH", { default: "ffmpeg" }),
    ffprobePath: env.string("FFPROBE_PATH", { default: "ffprobe" }),
    maxInputSeconds: env.int("CONVERT_MAX_INPUT_SECONDS", {
      default: 14_400,
      min: 1,
      max: 7 * MAX_SECONDS,
    }),
    timeoutSeconds: env.int("CONVERT_TIMEOUT_SECONDS", { default: 1800, min: 1, max: MAX_SECONDS }),
    cpuSeconds: env.int("CONVERT_CPU_SECONDS", { default: 1800, min: 1, max: MAX_SECONDS }),
    mp3Quality: env.int("MP3_QUALITY", { default: 2, min: 0, max: 9 }),
    workDir: env.string("WORK_DIR", { default: tmpdir() }),
    drainSeconds: env.int("CONVERTER_DRAIN_SECONDS", {
      default: DEFAULT_DRAIN_SECONDS,
      min: 0,
      max: MAX_DRAIN_SECONDS,
    }),
  };
}
