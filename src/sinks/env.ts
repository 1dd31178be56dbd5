// The environment sink: secrets overlay the inherited environment, so values baked into the
// image act as defaults and the secret wins.

import { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';

/** Variables that configure secret-fetch itself are not passed on: some hold secrets of their own. */
const OWN_PREFIX = 'SECRET_FETCH_';

/**
 * Variables that decide which code the command's dynamic loader and C library load: every LD_*,
 * and the rest of glibc's list of variables it drops for setuid programs (unsecvars.h; TMPDIR
 * aside). A secret may set them only with --allow-loader-env.
 */
const LOADER_VARIABLES = new Set([
  'GCONV_PATH',
  'GETCONF_DIR',
  'GLIBC_TUNABLES',
  'HOSTALIASES',
  'LOCALDOMAIN',
  'LOCPATH',
  'MALLOC_TRACE',
  'NIS_PATH',
  'NLSPATH',
  'RESOLV_HOST_CONF',
  'RES_OPTIONS',
  'TZDIR',
]);

export function isLoaderVariable(name: string): boolean {
  return name.startsWith('LD_') || LOADER_VARIABLES.has(name);
}

/** Throws a FormatError naming the first entry of `entries` (from `source`) that sets a loader variable. */
export function refuseLoaderEntries(entries: SecretEntries, source: string): void {
  const name = entries.names().find(isLoaderVariable);
  if (name === undefined) return;
  throw new FormatError(
    `${source}: the entry ${name} would set the command's ${name}, which decides what code its loader runs; refused`,
    'remove it from the secret, or pass --allow-loader-env if the secret is meant to set it',
  );
}

/** The inherited environment without secret-fetch's own variables: what any child may see. */
export function inheritedEnvironment(inherited: Readonly<Record<string, string | undefined>>): Record<string, string> {
  return Object.fromEntries(inheritedEntries(inherited));
}

// A Map, then own properties (Object.fromEntries): assigning env["__proto__"] on a plain object
// would set its prototype and drop the variable.
function inheritedEntries(inherited: Readonly<Record<string, string | undefined>>): Map<string, string> {
  const env = new Map<string, string>();
  for (const [name, value] of Object.entries(inherited)) {
    if (value !== undefined && !name.startsWith(OWN_PREFIX)) env.set(name, value);
  }
  return env;
}

export function commandEnvironment(
  inherited: Readonly<Record<string, string | undefined>>,
  secrets: readonly SecretEntries[],
): Record<string, string> {
  const env = inheritedEntries(inherited);
  for (const entries of secrets) {
    for (const [name, value] of entries.entries()) env.set(name, value);
  }
  return Object.fromEntries(env);
}
