// An init's reaping under --supervise and as a sidecar (issue 14): orphaned descendants that exit
// become zombies of PID 1, or of the nearest child subreaper, until someone waits for them. Node
// and Bun wait only for the children they started, so secret-fetch does the rest here: it becomes
// a subreaper when it is not PID 1 (as `tini -s`), and on every SIGCHLD reaps each exited child
// that the runtime does not wait for itself, never the command (its status is the exit status).
// A child that a library started in the meantime (none does after the fetch) is not known here.

import type { Logger } from '../log.ts';
import { loadedSys } from './sys.ts';

/**
 * Starts reaping; `isRuntimes` claims the PIDs the runtime waits for. False where there is no sys
 * module (Node): nothing reaps then.
 */
export function startReaping(isRuntimes: (pid: number) => boolean, log: Logger): boolean {
  const sys = loadedSys();
  if (sys === undefined) return false;
  if (process.pid !== 1) sys.setChildSubreaper();
  process.on('SIGCHLD', () => {
    try {
      const reaped = sys.reapOrphans(isRuntimes);
      if (reaped.length > 0) log.debug(`reaped orphaned process${reaped.length > 1 ? 'es' : ''} ${reaped.join(', ')}`);
    } catch (error) {
      log.warn(`cannot reap orphaned processes: ${error instanceof Error ? error.message : String(error)}`);
    }
  });
  return true;
}
