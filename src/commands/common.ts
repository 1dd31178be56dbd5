// What every operator subcommand shares: the service endpoints, --timeout, --verbose and
// --log-format (flags first, then their SECRET_FETCH_* variables, as for the main run), --help
// with an example, and a run context of clients, retry policy and deadline.

import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readCaFile } from '../ca-file.ts';
import { type Clients, createClients, type Endpoints } from '../clients.ts';
import type { CredentialsPlan } from '../credentials.ts';
import { UsageError } from '../errors.ts';
import type { LogFormat, Logger } from '../log.ts';
import { credentialsPlan, envNameOf, parseDuration, parseEndpoints, storageEndpoint } from '../options.ts';
import { createRetry, Deadline, type Retry } from '../retry.ts';
import type { CommandContext } from './index.ts';

export interface SubcommandFlag {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
}

export interface SubcommandSpec<F extends Record<string, SubcommandFlag>> {
  readonly name: string;
  /** Printed for --help: usage line, what it does, flags and at least one example. */
  readonly help: string;
  readonly flags: F;
  /** How many positional arguments it takes. */
  readonly positionals: { readonly min: number; readonly max: number };
}

type FlagValue<S extends SubcommandFlag> = S['type'] extends 'boolean'
  ? boolean | undefined
  : S['multiple'] extends true
    ? string[] | undefined
    : string | undefined;

export interface ParsedSubcommand<F extends Record<string, SubcommandFlag>> {
  readonly values: { readonly [K in keyof F]: FlagValue<F[K]> };
  readonly positionals: readonly string[];
  readonly endpoints: Endpoints;
  readonly credentials: CredentialsPlan;
  /** --ca-file: PEM certificates trusted besides the system roots (by the thin clients). */
  readonly ca: readonly string[] | undefined;
  readonly timeoutMs: number;
  readonly log: Logger;
  /** --log-format: a subcommand whose stdout is a report may print it as JSON lines too. */
  readonly logFormat: LogFormat;
}

const COMMON = {
  'storage-endpoint': { type: 'string' },
  'kms-endpoint': { type: 'string' },
  'secret-manager-endpoint': { type: 'string' },
  'ca-file': { type: 'string' },
  timeout: { type: 'string' },
  'log-format': { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Record<string, SubcommandFlag>;

/** Common flags, one per line, for the help texts. */
export const COMMON_HELP = `Common flags (each also read from SECRET_FETCH_<FLAG> when absent):
  --storage-endpoint URL, --kms-endpoint URL, --secret-manager-endpoint URL   (http:// uses no credentials)
  --ca-file PATH   (PEM bundle of CAs to trust besides the system roots)
  --timeout DURATION (default 30s), --log-format text|json, -v/--verbose, -h/--help`;

/** Parses a subcommand's argv; undefined means --help was printed (exit 0). */
export function parseSubcommand<F extends Record<string, SubcommandFlag>>(
  spec: SubcommandSpec<F>,
  argv: readonly string[],
  context: CommandContext,
): ParsedSubcommand<F> | undefined {
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: { ...COMMON, ...spec.flags },
      strict: true,
      allowPositionals: true,
    }));
  } catch (error) {
    const message = error instanceof Error ? (error.message.split('. ')[0] ?? error.message) : String(error);
    throw new UsageError(`${spec.name}: ${message.replace(/\.$/, '')}`, `see secret-fetch ${spec.name} --help`);
  }
  if (values.help === true) {
    writeSync(1, spec.help.endsWith('\n') ? spec.help : `${spec.help}\n`);
    return undefined;
  }
  const fromEnv = (flag: keyof typeof COMMON): string | undefined => {
    const given = values[flag];
    if (typeof given === 'string') return given;
    const env = context.environ[envNameOf(flag)];
    return env === undefined || env === '' ? undefined : env;
  };
  const { min, max } = spec.positionals;
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(
      `${spec.name} takes ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${positionals.length}`,
      `see secret-fetch ${spec.name} --help`,
    );
  }
  const logFormat = fromEnv('log-format') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw new UsageError(`--log-format ${logFormat} is not known`, 'use text or json');
  }
  const verbose = values.verbose === true || /^(1|true|yes|on)$/i.test(context.environ.SECRET_FETCH_VERBOSE ?? '');
  const log = context.useLogger({ format: logFormat, verbose });
  const caFile = fromEnv('ca-file');
  const endpoints = parseEndpoints({
    storage: storageEndpoint(fromEnv('storage-endpoint'), context.environ),
    kms: fromEnv('kms-endpoint'),
    secretManager: fromEnv('secret-manager-endpoint'),
  });
  return {
    values: values as ParsedSubcommand<F>['values'],
    positionals,
    endpoints,
    credentials: credentialsPlan(context.environ, endpoints),
    ca: caFile === undefined ? undefined : readCaFile(caFile),
    timeoutMs: parseDuration('timeout', fromEnv('timeout') ?? '30s'),
    log,
    logFormat,
  };
}

/**
 * The largest secret an operator command reads or writes (as --max-size's default): each is held
 * in memory whole, to hash, parse or encrypt it.
 */
export const OPERATOR_MAX_BYTES = 64 * 1024 ** 2;

export interface RemoteContext {
  readonly clients: Clients;
  readonly retry: Retry;
  readonly deadline: Deadline;
}

/** Clients, one retry policy and the --timeout deadline for a subcommand's remote calls. */
export function remoteContext(parsed: ParsedSubcommand<Record<string, SubcommandFlag>>): RemoteContext {
  const deadline = new Deadline(parsed.timeoutMs);
  return {
    clients: createClients(parsed.endpoints, parsed.credentials, undefined, parsed.ca),
    retry: createRetry({ log: parsed.log, deadline }),
    deadline,
  };
}

/** Writes all of `bytes` to stdout, the one place plaintext may go; waits out a non-blocking pipe. */
export function writeStdout(bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.byteLength) {
    try {
      offset += writeSync(1, bytes, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}
