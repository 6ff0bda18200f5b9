/**
 * Reads settings from environment variables. Each service's `config.ts` describes its settings with
 * an `EnvReader`; `loadConfig` collects every problem before failing, so one start-up names all
 * missing and invalid variables at once.
 */

export type Env = Readonly<Record<string, string | undefined>>;

/** Thrown by `loadConfig` with one line per invalid or missing variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

interface Common<T> {
  default?: T;
}

/** Typed, checked access to environment variables; problems are collected, not thrown. */
export class EnvReader {
  readonly problems: string[] = [];
  readonly #env: Env;

  constructor(env: Env) {
    this.#env = env;
  }

  #raw(name: string): string | undefined {
    const value = this.#env[name];
    return value === undefined || value.trim() === "" ? undefined : value.trim();
  }

  #missing<T>(name: string, fallback: T | undefined, example: string): T {
    if (fallback !== undefined) return fallback;
    this.problems.push(`${name} is missing; set it, for example ${name}=${example}`);
    return undefined as T;
  }

  /** A string; required unless a default is given. */
  string(name: string, options: Common<string> & { example?: string } = {}): string {
    return this.#raw(name) ?? this.#missing(name, options.default, options.example ?? "value");
  }

  /** A string that may be absent. */
  optionalString(name: string): string | undefined {
    return this.#raw(name);
  }

  /** An integer within `[min, max]`. */
  int(name: string, options: Common<number> & { min?: number; max?: number }): number {
    const raw = this.#raw(name);
    const min = options.min ?? Number.MIN_SAFE_INTEGER;
    const max = options.max ?? Number.MAX_SAFE_INTEGER;
    if (raw === undefined) return this.#missing(name, options.default, String(min));
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problems.push(`${name}=${raw} is invalid; expected an integer from ${min} to ${max}`);
      return options.default ?? min;
    }
    return value;
  }

  /** `true`/`false` (also `1`/`0`, `yes`/`no`). */
  bool(name: string, options: Common<boolean> = {}): boolean {
    const raw = this.#raw(name)?.toLowerCase();
    if (raw === undefined) return this.#missing(name, options.default, "true");
    if (["true", "1", "yes"].includes(raw)) return true;
    if (["false", "0", "no"].includes(raw)) return false;
    this.problems.push(`${name}=${raw} is invalid; expected true or false`);
    return options.default ?? false;
  }

  /** One of a fixed set of values. */
  oneOf<const T extends string>(name: string, values: readonly T[], options: Common<T> = {}): T {
    const raw = this.#raw(name);
    if (raw === undefined) return this.#missing(name, options.default, values[0] ?? "");
    if ((values as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${name}=${raw} is invalid; expected one of ${values.join(", ")}`);
    return options.default ?? (values[0] as T);
  }

  /**
   * A URL whose scheme is one of `schemes` (written without the colon). The value is not echoed
   * in the problem text because connection URLs often carry a password.
   */
  url(name: string, schemes: readonly string[], options: Common<string> = {}): string {
    const raw = this.#raw(name);
    const example = `${schemes[0]}://…`;
    if (raw === undefined) return this.#missing(name, options.default, example);
    let scheme: string;
    try {
      scheme = new URL(raw).protocol.replace(/:$/, "");
    } catch {
      this.problems.push(`${name} is not a valid URL; expected for example ${example}`);
      return options.default ?? raw;
    }
    if (!schemes.includes(scheme)) {
      const list = schemes.map((s) => `${s}:`).join(", ");
      this.problems.push(
        `${name} has scheme ${scheme}:, which is not supported; use one of ${list}`,
      );
    }
    return raw;
  }

  /** Records a problem found by a check that spans several variables. */
  addProblem(problem: string): void {
    this.problems.push(problem);
  }
}

/** Runs `describe` against `env`, then throws `ConfigError` if any variable was bad. */
export function loadConfig<T extends object>(
  describe: (env: EnvReader) => T,
  env: Env,
): Readonly<T> {
  const reader = new EnvReader(env);
  const config = describe(reader);
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return Object.freeze(config);
}
