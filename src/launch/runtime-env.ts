// The runtime's own environment variables must not change a run. Node reads them for itself, most
// during its bootstrap, before any of our code: NODE_DEBUG=stream prints plaintext and tokens,
// NODE_TLS_REJECT_UNAUTHORIZED=0 turns certificate checks off, NODE_CHANNEL_FD opens an IPC
// channel (on fd 0 it aborts the run). Deleting them from process.env is too late, so when one is
// set secret-fetch executes itself again (same binary, same arguments) without them, and carries
// their values in one internal variable that gives them back to the command's environment: a Node
// app behind secret-fetch still gets its NODE_EXTRA_CA_CERTS or NODE_DEBUG.
//
// The list is Node 24's; the Bun-compiled binary (scripts/build-bun.ts) adds Bun's own. A re-exec
// costs a whole start, so it happens only when a listed variable is set (never for a NODE_* or
// BUN_* prefix: node images set NODE_VERSION, oven/bun images BUN_INSTALL_BIN).

import { accessSync, constants, readFileSync } from 'node:fs';
import { SecretFetchError, UsageError } from '../errors.ts';
import { replaceProcess } from './process-state.ts';

/**
 * Every variable Node 24 reads for itself that changes what secret-fetch does. Harmless here and
 * left alone: NODE_OPTIONS (the binary is built with execArgvExtension "none"), NODE_PATH and
 * NODE_PRESERVE_SYMLINKS(_MAIN) (a single executable requires built-ins only), NODE_NO_WARNINGS
 * (warnings go to --verbose through our own listener), UV_THREADPOOL_SIZE and UV_USE_IO_URING
 * (performance only), TZ, the colour variables, the REPL's and the test runner's, and those that
 * act only with a flag or a variable listed here (SSL_CERT_FILE, SSL_CERT_DIR,
 * NODE_CHANNEL_SERIALIZATION_MODE, NODE_COMPILE_CACHE_PORTABLE, NODE_CLUSTER_SCHED_POLICY).
 */
export const RUNTIME_VARIABLES: readonly string[] = [
  'NODE_DEBUG', // core modules print their internals (stream: plaintext; http, tls: requests)
  'NODE_DEBUG_NATIVE', // the same for C++ internals
  'NODE_V8_COVERAGE', // writes coverage files
  'NODE_COMPILE_CACHE', // creates and fills a compile cache
  'NODE_CHANNEL_FD', // an IPC channel on that fd
  'NODE_UNIQUE_ID', // cluster worker mode
  'NODE_USE_ENV_PROXY', // routes requests through HTTP_PROXY / HTTPS_PROXY
  'NODE_TLS_REJECT_UNAUTHORIZED', // 0 turns certificate checks off
  'NODE_EXTRA_CA_CERTS', // trusts more roots (--ca-file is the documented way)
  'NODE_USE_SYSTEM_CA', // trusts the system's roots
  'NODE_ICU_DATA', // loads other ICU data
  'NODE_REDIRECT_WARNINGS', // writes warnings to a file
  'NODE_PENDING_DEPRECATION', // more warnings
  'OPENSSL_CONF', // OpenSSL configuration: providers, engines, algorithms
  'OPENSSL_CONF_INCLUDE',
  'OPENSSL_MODULES', // where OpenSSL loads providers from
  'OPENSSL_ENGINES', // where OpenSSL loads engines from
  'OPENSSL_ia32cap', // which CPU code paths OpenSSL's crypto takes
];

/**
 * What the Bun runtime (1.4.5) reads for itself, in a compiled binary too, besides Node's list
 * (it honours NODE_TLS_REJECT_UNAUTHORIZED, NODE_EXTRA_CA_CERTS, NODE_USE_ENV_PROXY and
 * NODE_CHANNEL_FD as well). Acted on before our code, so beyond a restart: BUN_OPTIONS' --preload
 * (the code runs, then the restart drops it), an invalid BUN_JSC_* (Bun exits 1 first) and
 * BUN_BE_BUN (the binary becomes the bun CLI and our code never runs); see the README's "Known limits".
 */
export const BUN_RUNTIME_VARIABLES: readonly string[] = [
  'BUN_OPTIONS', // more command-line flags: --preload, --inspect, ...
  'BUN_INSPECT', // starts the inspector
  'BUN_INSPECT_CONNECT_TO',
  'BUN_INSPECT_NOTIFY',
  'BUN_INSPECT_PRELOAD',
  'BUN_CONFIG_VERBOSE_FETCH', // prints every fetch() request with its headers (tokens)
  'BUN_CONFIG_MAX_HTTP_REQUESTS', // how many requests may be in flight
  'BUN_CONFIG_DNS_TIME_TO_LIVE_SECONDS',
  'BUN_CONFIG_HTTP_IDLE_TIMEOUT',
  'BUN_TCC_OPTIONS', // options of the C compiler behind bun:ffi
  'BUN_CRASH_REPORT_URL', // where a crash report is sent
  'BUN_ENABLE_CRASH_REPORTING',
  'BUN_BYTECODE_ORDER_OUT', // write files about the run
  'BUN_BYTECODE_ORDER_NAMES_OUT',
  'BUN_BYTECODE_DIGEST_OUT',
  'JSC_SIGNAL_FOR_GC', // the signal JavaScriptCore's GC takes for itself (SIGPWR): 15 would swallow SIGTERM
];
/** Whole families: JavaScriptCore options, feature flags (IPv4/IPv6, HTTP/2, DNS cache), debug logs. */
const BUN_RUNTIME_PREFIXES = ['BUN_JSC_', 'BUN_FEATURE_FLAG_', 'BUN_DEBUG_'];

export type Runtime = 'node' | 'bun';

/** Whether `runtime` acts on the variable `name` (Bun: Node's list too). */
export function isRuntimeVariable(name: string, runtime: Runtime = 'node'): boolean {
  if (RUNTIME_VARIABLES.includes(name)) return true;
  return (
    runtime === 'bun' &&
    (BUN_RUNTIME_VARIABLES.includes(name) || BUN_RUNTIME_PREFIXES.some((prefix) => name.startsWith(prefix)))
  );
}

/** The internal variable that carries the removed values (a SECRET_FETCH_* name: never passed on as is). */
export const RUNTIME_CARRIER = 'SECRET_FETCH_RUNTIME_ENV';

/** Linux's MAX_ARG_STRLEN (32 pages of 4 KiB): the longest NAME=value execve takes. */
const MAX_VARIABLE_BYTES = 32 * 4096;

type Environ = Readonly<Record<string, string | undefined>>;

interface Carried {
  /** The process that re-executed itself: seeing its own pid again means the variables came back. */
  readonly pid: number;
  readonly env: Record<string, string>;
}

/** The listed variables set in `initial`, with their values. */
export function runtimeVariablesIn(initial: Environ, runtime: Runtime = 'node'): Record<string, string> {
  const found: Record<string, string> = {};
  for (const [name, value] of Object.entries(initial)) {
    if (value !== undefined && isRuntimeVariable(name, runtime)) found[name] = value;
  }
  return found;
}

/**
 * The environment to execute secret-fetch again with: `environ` without the listed variables,
 * plus the carrier holding their values from `initial` (what the process was started with). Throws
 * when this process already did so (`pid` in the carrier) and a variable is set again.
 */
export function environmentWithoutRuntimeVariables(
  environ: Environ,
  initial: Environ,
  pid: number,
  runtime: Runtime = 'node',
): Record<string, string> {
  const found = runtimeVariablesIn(initial, runtime);
  const names = Object.keys(found);
  const previous = environ[RUNTIME_CARRIER];
  if (previous !== undefined && parseCarrier(previous)?.pid === pid) {
    throw new SecretFetchError(
      `${names.join(', ')} came back after secret-fetch restarted without ${names.length > 1 ? 'them' : 'it'}`,
      70,
      'please report this with the environment variable names you set',
    );
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(environ)) {
    if (value !== undefined && !isRuntimeVariable(name, runtime)) env[name] = value;
  }
  const carrier = JSON.stringify({ pid, env: found } satisfies Carried);
  if (Buffer.byteLength(carrier) + RUNTIME_CARRIER.length + 2 > MAX_VARIABLE_BYTES) {
    throw new UsageError(
      `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} too large to pass on (${MAX_VARIABLE_BYTES} bytes in all at most)`,
      `unset ${names.join(', ')} for secret-fetch: the runtime would act on ${names.length > 1 ? 'them' : 'it'}`,
    );
  }
  env[RUNTIME_CARRIER] = carrier;
  return env;
}

/**
 * Run first: when a listed variable is set, replaces this process with a fresh start of the same
 * binary and arguments without them (never returns); otherwise returns at once.
 */
export function reexecWithoutRuntimeVariables(): void {
  const initial = initialEnvironment();
  const runtime = process.versions.bun === undefined ? 'node' : 'bun';
  if (Object.keys(runtimeVariablesIn(initial, runtime)).length === 0) return;
  // Only the shipped binary: under the user's own Node (the laptop package) the runtime and its
  // variables are the user's, and argv[1] is a script path a re-exec would have to carry.
  if (!isSingleExecutable()) return;
  const env = environmentWithoutRuntimeVariables(process.env, initial, process.pid, runtime);
  // /proc/self/exe is this very binary even if its path was replaced meanwhile; process.execve
  // neither searches PATH nor returns on failure (it aborts), so the file is checked first.
  const file = [`/proc/self/exe`, process.execPath].find(isExecutable);
  const execve = process.execve?.bind(process);
  if (file === undefined || execve === undefined) {
    const names = Object.keys(runtimeVariablesIn(initial, runtime)).join(', ');
    throw new UsageError(
      `cannot restart without ${names}: ${execve === undefined ? `this Node.js (${process.version}) has no process.execve` : 'the binary cannot be executed again'}`,
      `unset ${names} for secret-fetch: the runtime would act on it`,
    );
  }
  replaceProcess(file, [process.argv0, ...process.argv.slice(2)], env);
}

/** A Node SEA, or a Bun-compiled binary (its entry script lives in Bun's embedded /$bunfs/). */
function isSingleExecutable(): boolean {
  const bun = (globalThis as { Bun?: { main?: unknown } }).Bun;
  if (bun !== undefined) return typeof bun.main === 'string' && bun.main.startsWith('/$bunfs/');
  const sea = process.getBuiltinModule?.('node:sea') as { isSea?: () => boolean } | undefined;
  return sea?.isSea?.() === true;
}

/**
 * `environ` as the caller gave it: the carried variables back, the carrier gone, and the names
 * that were carried (for --verbose). Throws a UsageError for a carrier that secret-fetch did not write.
 */
export function restoreRuntimeVariables(environ: Environ): { environ: Environ; carried: string[] } {
  const text = environ[RUNTIME_CARRIER];
  if (text === undefined) return { environ, carried: [] };
  const carried = parseCarrier(text);
  if (carried === undefined) {
    throw new UsageError(`${RUNTIME_CARRIER} is internal to secret-fetch`, `unset ${RUNTIME_CARRIER}`);
  }
  const restored: Record<string, string | undefined> = { ...environ };
  delete restored[RUNTIME_CARRIER];
  for (const [name, value] of Object.entries(carried.env)) restored[name] = value;
  return { environ: restored, carried: Object.keys(carried.env) };
}

function parseCarrier(text: string): Carried | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { pid, env } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(pid) || typeof env !== 'object' || env === null || Array.isArray(env)) return undefined;
  const entries = Object.entries(env);
  // Only the listed variables, as strings: the carrier is not a way to set anything else.
  if (!entries.every(([name, v]) => isRuntimeVariable(name, 'bun') && typeof v === 'string')) return undefined;
  return { pid: pid as number, env: Object.fromEntries(entries) as Record<string, string> };
}

/**
 * The environment this process was started with. Node and Bun delete some variables from
 * process.env while they act on them (NODE_CHANNEL_FD, NODE_UNIQUE_ID); /proc/self/environ still
 * has them.
 */
function initialEnvironment(): Environ {
  let text: string;
  try {
    text = readFileSync('/proc/self/environ', 'utf8');
  } catch {
    return process.env; // no /proc: what Node left
  }
  const initial: Record<string, string> = Object.create(null);
  for (const entry of text.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) initial[entry.slice(0, eq)] ??= entry.slice(eq + 1);
  }
  return initial;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
