// `secret-fetch probe --ready-file PATH`: for an exec startupProbe/readinessProbe. Exits 0 when
// the ready file exists (the first outputs are in place), 1 with one stderr line otherwise.
// Kept tiny: no fetch, no clients, nothing of the pipeline.

import { statSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { show } from '../log.ts';
import type { Subcommand } from './index.ts';

export const probeCommand: Subcommand = {
  run: async (argv, context) => probe(argv, context.environ),
};

const HELP = `Usage: secret-fetch probe --ready-file PATH

Exits 0 once the --ready-file of a secret-fetch sidecar or entrypoint exists (its first outputs are
in place), and 1 with one line on stderr before that. Also reads SECRET_FETCH_READY_FILE.

Example (a Kubernetes startupProbe on the sidecar):
  startupProbe: { exec: { command: [/secret-fetch, probe, --ready-file, /run/secrets/.ready] } }
`;

export function probe(argv: readonly string[], environ: Readonly<Record<string, string | undefined>>): number {
  let path: string | undefined;
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: { 'ready-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
    if (values.help === true) {
      writeSync(1, HELP);
      return 0;
    }
    path = values['ready-file'] ?? (environ.SECRET_FETCH_READY_FILE || undefined);
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
