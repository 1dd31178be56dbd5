// An init's reaping under --supervise and as a sidecar (issue 14): orphaned descendants that exit
// become zombies of PID 1, or of the nearest child subreaper, until someone waits for them. Node
// and Bun wait only for the children they started, so secret-fetch does the rest here: it becomes
// a subreaper when it is not PID 1 (as `tini -s`), and on every SIGCHLD first collects the status
// of the commands it watches (started by src/launch/sys.ts, which no runtime waits for), then
// reaps every other exited child. A child that a library started in the meantime (none does
// after the fetch) is not known here.

import type { Logger } from '../log.ts';
import { loadedSys, type Sys } from './sys.ts';

export interface ChildExit {
  readonly code: number | null;
  /** The signal's number. */
  readonly signal: number | null;
}

export class Reaper {
  readonly #sys: Sys;
  readonly #log: Logger;
  readonly #watched = new Map<number, (exit: ChildExit) => void>();

  private constructor(sys: Sys, log: Logger) {
    this.#sys = sys;
    this.#log = log;
  }

  /** Starts reaping, or gives undefined where there is no sys module (Node, an old glibc): nothing reaps then. */
  static start(log: Logger): Reaper | undefined {
    const sys = loadedSys();
    if (sys === undefined || !sys.bindProcessCalls()) return undefined;
    if (process.pid !== 1) {
      try {
        sys.setChildSubreaper();
      } catch (error) {
        // A sandbox without it (older gVisor): orphans go to PID 1 as they would without us.
        log.debug(`not a subreaper: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    const reaper = new Reaper(sys, log);
    process.on('SIGCHLD', () => reaper.#reap());
    return reaper;
  }

  get sys(): Sys {
    return this.#sys;
  }

  /** Calls `onExit` once `pid` (a child of this process) has exited, from the SIGCHLD that says so. */
  watch(pid: number, onExit: (exit: ChildExit) => void): void {
    this.#watched.set(pid, onExit);
    this.#reap(); // it may have exited before the listener was there
  }

  #reap(): void {
    try {
      for (const [pid, onExit] of this.#watched) {
        const exit = this.#sys.waitChild(pid);
        if (exit === undefined) continue;
        this.#watched.delete(pid);
        onExit(exit);
      }
      const reaped = this.#sys.reapOrphans((pid) => this.#watched.has(pid));
      if (reaped.length > 0)
        this.#log.debug(`reaped orphaned process${reaped.length > 1 ? 'es' : ''} ${reaped.join(', ')}`);
    } catch (error) {
      this.#log.warn(`cannot reap orphaned processes: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
