// Sidecar mode: --refresh without a command. secret-fetch stays in the foreground keeping the
// --out files fresh for another container that shares the volume; it forwards nothing (there is
// no child) and exits 0 on SIGTERM, SIGINT or SIGQUIT. SIGHUP is ignored.

import type { Logger } from '../log.ts';
import type { LaunchPlan } from './exec.ts';

const STOPS = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;

/** Stands in for the Supervisor under --refresh: `done` resolves to 0 on a stop signal. */
export class Sidecar {
  readonly done: Promise<number>;
  readonly running = false;
  #resolve!: (status: number) => void;

  constructor(log: Logger, onStart?: () => void) {
    this.done = new Promise((resolve) => {
      this.#resolve = resolve;
    });
    // The fetch stage's interrupt handlers are swapped for these in one tick.
    onStart?.();
    const listeners = STOPS.map((signal) => {
      const listener = (): void => {
        log.debug(`received ${signal}: the sidecar exits`);
        this.stop();
      };
      process.on(signal, listener);
      return [signal, listener] as const;
    });
    const ignoreHup = (): void => log.debug('received SIGHUP: ignored (no command to forward it to)');
    process.on('SIGHUP', ignoreHup);
    // The refresh timers are unref'd: this keeps the process alive until a stop signal.
    const keepAlive = setInterval(() => {}, 2 ** 30);
    void this.done.then(() => {
      clearInterval(keepAlive);
      for (const [signal, listener] of listeners) process.off(signal, listener);
      process.off('SIGHUP', ignoreHup);
    });
    log.debug('no command: running as a sidecar, refreshing the --out files');
  }

  signal(_signal: NodeJS.Signals): void {}

  restart(_plan: LaunchPlan): void {}

  stop(): void {
    this.#resolve(0);
  }
}
