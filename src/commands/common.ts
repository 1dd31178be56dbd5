// What every operator subcommand shares: the service endpoints, --timeout, --verbose and
// --log-format (flags first, then their SECRET_FETCH_* variables, as for the main run), --help
// with an example, and a run context of clients, retry policy and deadline.

import { writeSync } from 'node:fs';
import { UsageError } from '../errors.ts';
import { type FlagSpec, parseDuration, parseFlags, parseLogFormat, renderFlags } from '../flags.ts';
import { detectFormat, type Format, formatFlag, parseEntries } from '../formats/index.ts';
import { readCaFile } from '../google/ca-file.ts';
import { type Clients, createClients } from '../google/clients.ts';
import { type CredentialsPlan, credentialsPlan } from '../google/credentials.ts';
import { type Endpoints, parseEndpoints, storageEndpoint } from '../google/endpoints.ts';
import type { LogFormat, Logger } from '../log.ts';
import { FLAGS } from '../options.ts';
import { createRetry, Deadline, type Retry } from '../retry.ts';
import type { Secret } from '../secret.ts';
import { type SourceRef, sourceFileName } from '../sources/reference.ts';
import type { CommandContext, Subcommand } from './index.ts';

export interface SubcommandSpec<F extends readonly FlagSpec[]> {
  readonly name: string;
  /** The usage lines and what it does, printed first by --help. */
  readonly about: string;
  /** Its own flags; --help renders them, then the common ones. */
  readonly flags: F;
  /** Printed after the flags: permissions, examples (at least one). */
  readonly more: string;
  /** How many positional arguments it takes. */
  readonly positionals: { readonly min: number; readonly max: number };
}

type FlagValue<S extends FlagSpec> = S['type'] extends 'boolean'
  ? boolean | undefined
  : S['multiple'] extends true
    ? string[] | undefined
    : string | undefined;

export type SubcommandValues<F extends readonly FlagSpec[]> = {
  readonly [S in F[number] as S['name']]: FlagValue<S>;
};

export interface ParsedSubcommand<F extends readonly FlagSpec[]> {
  readonly values: SubcommandValues<F>;
  readonly positionals: readonly string[];
  /** The flags whose value came from their SECRET_FETCH_* variable, not from argv. */
  readonly fromEnv: ReadonlySet<string>;
  readonly endpoints: Endpoints;
  readonly credentials: CredentialsPlan;
  /** --ca-file: PEM certificates trusted besides the system roots (by the thin clients). */
  readonly ca: readonly string[] | undefined;
  readonly timeoutMs: number;
  readonly log: Logger;
  /** --log-format: a subcommand whose stdout is a report may print it as JSON lines too. */
  readonly logFormat: LogFormat;
}

const COMMON_NAMES = [
  'storage-endpoint',
  'kms-endpoint',
  'secret-manager-endpoint',
  'ca-file',
  'timeout',
  'log-format',
  'verbose',
  'help',
];

/** The flags every subcommand takes, as the main run has them (same help, same variables). */
export const COMMON_FLAGS: readonly FlagSpec[] = COMMON_NAMES.map((name) => {
  const flag = FLAGS.find((f) => f.name === name);
  if (flag === undefined) throw new Error(`no main-run flag --${name}`);
  return flag;
});

/** A subcommand's --help: what it does, its flags and the common ones (from the specs), then the rest. */
export function renderSubcommandHelp(spec: SubcommandSpec<readonly FlagSpec[]>): string {
  return [
    spec.about.trimEnd(),
    '',
    ...(spec.flags.length > 0
      ? ['Flags (each with a variable in brackets also reads it when absent):', ...renderFlags(spec.flags), '']
      : []),
    'Common flags:',
    ...renderFlags(COMMON_FLAGS),
    '',
    spec.more.trimEnd(),
    '',
  ].join('\n');
}

/** A subcommand's flags and --help, from its spec. */
export function described(spec: SubcommandSpec<readonly FlagSpec[]>): Pick<Subcommand, 'flags' | 'help'> {
  return { flags: [...COMMON_FLAGS, ...spec.flags], help: () => renderSubcommandHelp(spec) };
}

/** Parses a subcommand's argv; undefined means --help was printed (exit 0). */
export function parseSubcommand<F extends readonly FlagSpec[]>(
  spec: SubcommandSpec<F>,
  argv: readonly string[],
  context: CommandContext,
): ParsedSubcommand<F> | undefined {
  const { values, positionals, fromEnv } = parseFlags(
    [...COMMON_FLAGS, ...spec.flags],
    argv,
    context.environ,
    spec.name,
  );
  if (values.help === true) {
    writeSync(1, renderSubcommandHelp(spec));
    return undefined;
  }
  const { min, max } = spec.positionals;
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(
      `${spec.name} takes ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${positionals.length}`,
      `see secret-fetch ${spec.name} --help`,
    );
  }
  const text = (flag: string) => values[flag] as string | undefined;
  const logFormat = parseLogFormat(text('log-format'));
  const log = context.useLogger({ format: logFormat, verbose: values.verbose === true });
  const caFile = text('ca-file');
  const endpoints = parseEndpoints({
    storage: storageEndpoint(text('storage-endpoint'), context.environ),
    kms: text('kms-endpoint'),
    secretManager: text('secret-manager-endpoint'),
  });
  return {
    values: values as SubcommandValues<F>,
    positionals,
    fromEnv,
    endpoints,
    credentials: credentialsPlan(context.environ, endpoints),
    ca: caFile === undefined ? undefined : readCaFile(caFile),
    timeoutMs: parseDuration('timeout', text('timeout') ?? '30s'),
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
export function remoteContext(
  parsed: Pick<ParsedSubcommand<readonly FlagSpec[]>, 'endpoints' | 'credentials' | 'ca' | 'log' | 'timeoutMs'>,
): RemoteContext {
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

/** The format a written secret is checked in: --format, else by the target's name, else by the file's. */
export function chooseFormat(given: string | undefined, target: SourceRef, file: string): Format {
  const flag = formatFlag(given ?? 'auto');
  if (flag !== 'auto') return flag;
  const byTarget = detectFormat(sourceFileName(target));
  return byTarget !== 'raw' ? byTarget : detectFormat(file);
}

/** A secret that would stop every start is refused before it is uploaded. */
export async function validateSecret(secret: Secret, format: Format, name: string): Promise<void> {
  if (format === 'raw') return;
  await parseEntries(format, secret.text(name), name);
}
