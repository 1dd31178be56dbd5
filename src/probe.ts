// `secret-fetch probe --ready-file PATH`: for an exec startupProbe/readinessProbe. Exits 0 when
// the ready file exists (the first outputs are in place), 1 with one stderr line otherwise.
// Kept tiny: no fetch, no clients, nothing of the pipeline.

import { statSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';

export function probe(argv: readonly string[], environ: Readonly<Record<string, string | undefined>>): number {
  let path: string | undefined;
  try {
    const { values } = parseArgs({ args: [...argv], options: { 'ready-file': { type: 'string' } }, strict: true });
    path = values['ready-file'] ?? (environ.SECRET_FETCH_READY_FILE || undefined);
  } catch (error) {
    return say(`usage: secret-fetch probe --ready-file PATH (${(error as Error).message.split('\n')[0]})`, 64);
  }
  if (path === undefined) return say('usage: secret-fetch probe --ready-file PATH', 64);
  try {
    if (statSync(path).isFile()) return 0;
    return say(`not ready: ${path} is not a file`, 1);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return say(`not ready: ${path} ${code === 'ENOENT' ? 'does not exist yet' : `cannot be read (${code})`}`, 1);
  }
}

function say(line: string, status: number): number {
  writeSync(2, `secret-fetch: probe: ${line}\n`);
  return status;
}
