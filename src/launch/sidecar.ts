// Sidecar mode: --refresh without a command. secret-fetch stays in the foreground keeping the
// --out files fresh for another container that shares the volume. It has no command to forward
// signals to: SIGHUP, SIGUSR1 and SIGUSR2 (a command's reload signals) are ignored, and every
// other signal that would end it (src/launch/signals.ts) stops it, with exit 0, as SIGTERM does.
// Orphans re-parented to it are reaped (src/launch/reaper.ts).

import type { Logger } from '../log.ts';
import { Reaper } from './reaper.ts';
import { handled, IGNORED_WITHOUT_COMMAND, STOP_SIGNALS } from './signals.ts';

const IGNORED = ['SIGHUP', IGNORED_WITHOUT_COMMAND, 'SIGUSR2'] as const;
const STOPS = STOP_SIGNALS.filter((signal) => !(IGNORED as readonly string[]).includes(signal));

/** The sidecar's lifetime under --refresh: `done` resolves to 0 on a stop signal. */
export class Sidecar {
  readonly done: Promise<number>;
  #resolve!: (status: number) => void;

  constructor(log: Logger, onStart?: () => void) {
    this.done = new Promise((resolve) => {
      this.#resolve = resolve;
    });
    // The fetch stage's interrupt handlers are swapped for these in one tick.
    onStart?.();
    // As PID 1 of a container (or a subreaper), an init reaps whatever is orphaned to it.
    Reaper.start(log);
    const listeners = handled(STOPS).map((signal) => {
      const listener = (): void => {
        log.debug(`received ${signal}: the sidecar exits`);
        this.stop();
      };
      process.on(signal, listener);
      return [signal, listener] as const;
    });
    const ignored = handled(IGNORED).map((signal) => {
      const listener = (): void => log.debug(`received ${signal}: ignored (no command to forward it to)`);
      process.on(signal, listener);
      return [signal, listener] as const;
    });
    // The refresh timers are unref'd: this keeps the process alive until a stop signal.
    const keepAlive = setInterval(() => {}, 2 ** 30);
    void this.done.then(() => {
      clearInterval(keepAlive);
      for (const [signal, listener] of [...listeners, ...ignored]) process.off(signal, listener);
    });
    log.debug('no command: running as a sidecar, refreshing the --out files');
  }

  stop(): void {
    this.#resolve(0);
  }
}
