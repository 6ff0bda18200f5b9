/**
 * A reader of the service Dockerfiles and `.dockerignore` for the image tests, which run with no
 * Docker engine. It returns the build stages and their instructions, the files each stage
 * contains with their paths in the build context, and the modules an entry point imports.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join, posix, relative } from "node:path";

/** One instruction, with line continuations joined. */
export interface Instruction {
  /** Upper-case keyword such as `FROM` or `COPY`. */
  keyword: string;
  /** The text after the keyword. */
  args: string;
  /** Line of the keyword, counted from 1. */
  line: number;
}

/** A build stage: its `FROM` and the instructions that follow it. */
export interface Stage {
  /** Image reference, or the name of an earlier stage. */
  base: string;
  /** Name given with `AS`. */
  name: string | undefined;
  instructions: Instruction[];
}

/** Parses a Dockerfile into stages. Comment lines and parser directives are skipped. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const instruction of parseInstructions(text)) {
    if (instruction.keyword === "FROM") {
      const [base = "", as, name] = instruction.args.split(/\s+/).filter((arg) => !/^--/.test(arg));
      stages.push({ base, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`line ${instruction.line}: ${instruction.keyword} before FROM`);
    stage.instructions.push(instruction);
  }
  return stages;
}

function parseInstructions(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    // Docker also drops comment lines inside a continued instruction.
    if (line === "" || line.startsWith("#")) continue;
    const continued = line.endsWith("\\");
    const part = continued ? line.slice(0, -1).trim() : line;
    pending = pending
      ? { ...pending, text: `${pending.text} ${part}` }
      : { text: part, line: index + 1 };
    if (continued) continue;

    const match = /^(\S+)\s*(.*)$/.exec(pending.text);
    instructions.push({
      keyword: (match?.[1] ?? "").toUpperCase(),
      args: match?.[2] ?? "",
      line: pending.line,
    });
    pending = undefined;
  }
  return instructions;
}

/** Returns the instructions of `stage` with `keyword`. */
export function instructionsOf(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** Parses the JSON (exec) form of CMD, ENTRYPOINT or RUN. Returns undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.trimStart().startsWith("[")) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string")) {
    throw new Error(`exec form must be a JSON array of strings: ${args}`);
  }
  return parsed;
}

/** A parsed COPY: its `--from` source, if any, its sources and its destination. */
export interface CopyInstruction {
  from: string | undefined;
  sources: string[];
  destination: string;
}

/** Parses the arguments of COPY. Quoted and JSON-form paths are not supported. */
export function parseCopy(args: string): CopyInstruction {
  const words = args.split(/\s+/).filter((word) => word !== "");
  const flags = words.filter((word) => word.startsWith("--"));
  const paths = words.filter((word) => !word.startsWith("--"));
  const destination = paths.pop();
  if (destination === undefined || paths.length === 0) {
    throw new Error(`COPY needs a source and a destination: ${args}`);
  }
  const from = flags.find((flag) => flag.startsWith("--from="))?.slice("--from=".length);
  return { from, sources: paths, destination };
}

/** One `.dockerignore` line as a regular expression over context-relative paths. */
interface IgnoreRule {
  pattern: string;
  negated: boolean;
  regex: RegExp;
}

/** The rules of a `.dockerignore`, in file order. */
export type IgnoreRules = readonly IgnoreRule[];

/**
 * Parses `.dockerignore`. It supports `*`, `?`, `**` and `!`, which is what the file uses. A
 * character class throws, so that the tests cannot silently misread a newer pattern.
 */
export function parseDockerignore(text: string): IgnoreRules {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const negated = line.startsWith("!");
      const pattern = posix.normalize((negated ? line.slice(1) : line).replace(/^\/+/, ""));
      return { pattern, negated, regex: globToRegex(pattern) };
    });
}

function globToRegex(pattern: string): RegExp {
  if (/[[\]\\]/.test(pattern)) throw new Error(`unsupported .dockerignore pattern ${pattern}`);
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i] as string;
    if (pattern.startsWith("**/", i)) {
      source += "(?:.*/)?";
      i += 2;
    } else if (pattern.startsWith("**", i)) {
      source += ".*";
      i += 1;
    } else if (char === "*") {
      source += "[^/]*";
    } else if (char === "?") {
      source += "[^/]";
    } else {
      source += char.replace(/[.+^${}()|]/g, "\\$&");
    }
  }
  return new RegExp(`^${source}$`);
}

/**
 * Tells whether Docker leaves `path` out of the build context: the last rule that matches the
 * path or one of its parent folders decides, as in Docker's own matcher.
 */
export function isIgnored(rules: IgnoreRules, path: string): boolean {
  const parts = path.split("/");
  const candidates = parts.map((_, index) => parts.slice(0, index + 1).join("/"));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((candidate) => rule.regex.test(candidate))) ignored = !rule.negated;
  }
  return ignored;
}

/** Files of the build context under `source` (a file or a folder) that `.dockerignore` lets in. */
export function contextFiles(root: string, source: string, rules: IgnoreRules): string[] {
  const path = posix.normalize(source).replace(/\/+$/, "");
  if (/[*?[]/.test(path)) throw new Error(`wildcard COPY sources are not supported: ${source}`);
  const absolute = join(root, path);
  if (!existsSync(absolute)) return [];
  const files = statSync(absolute).isDirectory()
    ? readdirSync(absolute, { recursive: true, encoding: "utf8" })
        .map((entry) => posix.join(path, entry))
        .filter((entry) => statSync(join(root, entry)).isFile())
    : [path];
  return files.filter((file) => !isIgnored(rules, file)).sort();
}

/** Files in an image stage: absolute path in the image → path in the build context. */
export type StageFiles = Map<string, string>;

/**
 * Follows the WORKDIR and COPY instructions of every stage and returns the files in each stage
 * that came from the build context, directly or through `COPY --from` an earlier stage.
 * Files from other images (`COPY --from=image`) and those made by RUN are not tracked.
 */
export function trackContextFiles(
  stages: readonly Stage[],
  root: string,
  rules: IgnoreRules,
): StageFiles[] {
  const files: StageFiles[] = [];
  const workdirs: string[] = [];
  for (const stage of stages) {
    const base = stages.findIndex((candidate) => candidate.name === stage.base);
    const current: StageFiles = new Map(base >= 0 ? files[base] : []);
    let workdir = base >= 0 ? (workdirs[base] as string) : "/";
    for (const instruction of stage.instructions) {
      if (instruction.keyword === "WORKDIR") workdir = posix.resolve(workdir, instruction.args);
      if (instruction.keyword !== "COPY") continue;

      const copy = parseCopy(instruction.args);
      const from = stages.findIndex((candidate) => candidate.name === copy.from);
      if (copy.from !== undefined && from < 0) continue;
      const sourceOf = (path: string) =>
        copy.from === undefined
          ? contextEntries(root, path, rules, instruction.line)
          : stageEntries(files[from] as StageFiles, posix.resolve("/", path));
      copyEntries(current, copy, workdir, sourceOf);
    }
    files.push(current);
    workdirs.push(workdir);
  }
  return files;
}

/** Adds to `files` what one COPY puts there, following Docker's rules for the destination. */
function copyEntries(
  files: StageFiles,
  copy: CopyInstruction,
  workdir: string,
  sourceOf: (path: string) => [string, string][],
): void {
  const destination = posix.resolve(workdir, copy.destination);
  // A file lands inside the destination folder when it ends in `/` or there are several sources.
  const intoFolder = copy.destination.endsWith("/") || copy.sources.length > 1;
  for (const source of copy.sources) {
    for (const [rest, contextPath] of sourceOf(source)) {
      let target = posix.join(destination, rest);
      if (rest === "" && intoFolder) target = posix.join(destination, posix.basename(source));
      files.set(target, contextPath);
    }
  }
}

/**
 * Pairs of (path below `source`, context path); the path is empty when `source` is a file.
 * Throws when the context lacks `source`, as Docker fails the build then.
 */
function contextEntries(
  root: string,
  source: string,
  rules: IgnoreRules,
  line: number,
): [string, string][] {
  const base = posix.normalize(source).replace(/\/+$/, "");
  const files = contextFiles(root, base, rules);
  if (files.length === 0) throw new Error(`line ${line}: COPY ${source} is missing or ignored`);
  return files.map((file) => [file === base ? "" : posix.relative(base, file), file]);
}

function stageEntries(files: StageFiles, source: string): [string, string][] {
  const entries: [string, string][] = [];
  for (const [path, contextPath] of files) {
    if (path === source) entries.push(["", contextPath]);
    else if (source === "/" || path.startsWith(`${source}/`)) {
      entries.push([posix.relative(source, path), contextPath]);
    }
  }
  return entries;
}

/** A module import that could not be matched to a copied file or a declared dependency. */
export interface ImportProblem {
  file: string;
  specifier: string;
  reason: string;
}

/** Production dependencies declared in a workspace's `package.json`. */
function declaredDependencies(root: string, workspace: string): Set<string> {
  const manifest = JSON.parse(readFileSync(join(root, workspace, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
  };
  return new Set(Object.keys(manifest.dependencies ?? {}));
}

/** `@scope/name` or `name` from a bare specifier such as `mysql2/promise`. */
function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return (specifier.startsWith("@") ? parts.slice(0, 2) : parts.slice(0, 1)).join("/");
}

/**
 * Walks the static and literal dynamic imports from `entry` (a context path) and reports every
 * import that leaves `copied`, or names a package its workspace (`lib` or the service folder)
 * does not list in `dependencies`. Type-only imports are skipped, as Bun skips them at run time.
 * `@mp3converter/lib/X` resolves to `lib/src/X.ts`, following the `exports` map of
 * `lib/package.json`.
 */
export function findImportProblems(
  root: string,
  entry: string,
  copied: ReadonlySet<string>,
): ImportProblem[] {
  const transpiler = new Bun.Transpiler({ loader: "ts" });
  const problems: ImportProblem[] = [];
  const seen = new Set<string>();
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    if (seen.has(file)) continue;
    seen.add(file);
    if (!copied.has(file)) {
      problems.push({ file, specifier: file, reason: "module is not copied into the image" });
      continue;
    }
    const workspace = file.split("/")[0] as string;
    const dependencies = declaredDependencies(root, workspace);
    const { imports } = transpiler.scan(readFileSync(join(root, file), "utf8"));
    for (const { path: specifier } of imports) {
      if (specifier.startsWith(".")) {
        queue.push(relative(root, join(root, dirname(file), specifier)));
      } else if (isBuiltin(specifier) || specifier.startsWith("bun:")) {
        // Part of the runtime.
      } else if (!dependencies.has(packageName(specifier))) {
        problems.push({ file, specifier, reason: `not in ${workspace}/package.json dependencies` });
      } else if (specifier.startsWith("@mp3converter/lib/")) {
        queue.push(`lib/src/${specifier.slice("@mp3converter/lib/".length)}.ts`);
      }
    }
  }
  return problems;
}
