// `secret-fetch probe --ready-file PATH`: for an exec startupProbe/readinessProbe. Exits 0 when
// the ready file exists (the first outputs are in place), 1 with one stderr line otherwise.
// Kept tiny: no fetch, no clients, nothing of the pipeline.

import { statSync, writeSync } from 'node:fs';
import { type FlagSpec, parseFlags, renderFlags } from '../flags.ts';
import { show } from '../log.ts';
import type { Subcommand } from './index.ts';

export const PROBE_FLAGS = [
  {
    name: 'ready-file',
    type: 'string',
    value: 'PATH',
    env: true,
    help: 'the --ready-file of the secret-fetch run to wait for',
  },
  { name: 'help', type: 'boolean', short: 'h', help: 'show this help' },
] as const satisfies readonly FlagSpec[];

const HELP = `Usage: secret-fetch probe --ready-file PATH

Exits 0 once the --ready-file of a secret-fetch sidecar or entrypoint exists (its first outputs are
in place), and 1 with one line on stderr before that.

Flags (each with a variable in brackets also reads it when absent):
${renderFlags(PROBE_FLAGS).join('\n')}

Example (a Kubernetes startupProbe on the sidecar):
  startupProbe: { exec: { command: [/secret-fetch, probe, --ready-file, /run/secrets/.ready] } }
`;

export const probeCommand: Subcommand = {
  flags: PROBE_FLAGS,
  help: () => HELP,
  run: async (argv, context) => probe(argv, context.environ),
};

export function probe(argv: readonly string[], environ: Readonly<Record<string, string | undefined>>): number {
  let path: string | undefined;
  try {
    const { values, positionals } = parseFlags(PROBE_FLAGS, argv, environ);
    if (positionals.length > 0)
      return say(`usage: secret-fetch probe --ready-file PATH (unexpected "${positionals[0]}")`, 64);
    if (values.help === true) {
      writeSync(1, HELP);
      return 0;
    }
    path = values['ready-file'] as string | undefined;
  } catch (error) {
    return say(`usage: secret-fetch probe --ready-file PATH (${(error as Error).message.split('\n')[0]})`, 64);
  }
  if (path === undefined) return say('usage: secret-fetch probe --ready-file PATH', 64);
  try {
    if (statSync(path).isFile()) return 0;
    return say(`not ready: ${show(path)} is not a file`, 1);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return say(`not ready: ${show(path)} ${code === 'ENOENT' ? 'does not exist yet' : `cannot be read (${code})`}`, 1);
  }
}

function say(line: string, status: number): number {
  writeSync(2, `secret-fetch: probe: ${line}\n`);
  return status;
}
