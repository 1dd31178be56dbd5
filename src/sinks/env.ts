// The environment sink: secrets overlay the inherited environment, so values baked into the
// image act as defaults and the secret wins.

import type { SecretEntries } from '../secret.ts';

/** Variables that configure secret-fetch itself are not passed on: some hold secrets of their own. */
const OWN_PREFIX = 'SECRET_FETCH_';

export function commandEnvironment(
  inherited: Readonly<Record<string, string | undefined>>,
  secrets: readonly SecretEntries[],
): Record<string, string> {
  // A Map, then own properties: assigning env["__proto__"] on a plain object would set its
  // prototype and drop the variable.
  const env = new Map<string, string>();
  for (const [name, value] of Object.entries(inherited)) {
    if (value !== undefined && !name.startsWith(OWN_PREFIX)) env.set(name, value);
  }
  for (const entries of secrets) {
    for (const [name, value] of entries.entries()) env.set(name, value);
  }
  return Object.fromEntries(env);
}
