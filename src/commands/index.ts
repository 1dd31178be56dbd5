// Operator subcommands (secret-fetch NAME ...): each lives in its own module, imported only when
// it is the one asked for, so the entrypoint path never loads them.

import type { FlagSpec } from '../flags.ts';
import type { LogFormat, Logger } from '../log.ts';
import type { StagedFiles } from '../sinks/file.ts';

export interface CommandContext {
  readonly environ: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Temp files that the CLI removes on every failure and on an interrupt. */
  readonly staged: StagedFiles;
  /** Replaces the CLI's logger once the subcommand knows --log-format and --verbose. */
  useLogger(options: { format: LogFormat; verbose: boolean }): Logger;
  /** Runs `cleanup` on every way out (failure, interrupt) until the returned function is called. */
  onExit(cleanup: () => void): () => void;
  /** Stops SIGINT/SIGQUIT from interrupting (while an interactive child runs), until released. */
  ignoreInterrupts(): () => void;
}

export interface Subcommand {
  /** Every flag it takes, as its --help lists them. */
  readonly flags: readonly FlagSpec[];
  /** The --help text, rendered from its spec. */
  help(): string;
  run(argv: readonly string[], context: CommandContext): Promise<number>;
}

export interface SubcommandEntry {
  /** The synopsis and one line of what it does, for secret-fetch --help. */
  readonly usage: string;
  readonly summary: string;
  /** The file under src/commands/ that `load` imports. */
  readonly module: string;
  /**
   * Which script of the executable holds it (scripts/bundle-plan.ts): `main` only for what is too
   * small to be worth a lazy load; `ops` (loaded on first use) for every command that reaches a
   * Google library or the pipeline.
   */
  readonly group: 'main' | 'ops';
  readonly load: () => Promise<Subcommand>;
}

export const SUBCOMMANDS: Readonly<Record<string, SubcommandEntry>> = {
  probe: {
    usage: 'probe --ready-file PATH',
    summary: 'exit 0 once --ready-file was written (for exec probes)',
    module: 'probe.ts',
    group: 'main',
    load: async () => (await import('./probe.ts')).probeCommand,
  },
  show: {
    usage: 'show SOURCE [--kms-key KEY]',
    summary: 'decrypt a secret to stdout',
    module: 'show.ts',
    group: 'ops',
    load: async () => (await import('./show.ts')).showCommand,
  },
  get: {
    usage: 'get SOURCE KEY [--kms-key KEY]',
    summary: 'one entry of a secret to stdout',
    module: 'show.ts',
    group: 'ops',
    load: async () => (await import('./show.ts')).getCommand,
  },
  push: {
    usage: 'push FILE TARGET [--kms-key KEY]',
    summary: 'check, encrypt and write a secret to gs://, berglas:// or sm:// (conditionally)',
    module: 'push.ts',
    group: 'ops',
    load: async () => (await import('./push.ts')).pushCommand,
  },
  edit: {
    usage: 'edit SOURCE [--kms-key KEY]',
    summary: 'decrypt gs://, berglas:// or sm:// to tmpfs, $EDITOR, write back if nobody wrote meanwhile',
    module: 'edit.ts',
    group: 'ops',
    load: async () => (await import('./edit.ts')).editCommand,
  },
  doctor: {
    usage: 'doctor [SOURCE...] [flags]',
    summary: 'check credentials, permissions and --out, with the gcloud fix for each failure',
    module: 'doctor.ts',
    group: 'ops',
    load: async () => (await import('./doctor.ts')).doctorCommand,
  },
  sign: {
    usage: 'sign gs://... --signing-key VERSION',
    summary: 'sign the object with a Cloud KMS key, for --verify-key',
    module: 'sign.ts',
    group: 'ops',
    load: async () => (await import('./sign.ts')).signCommand,
  },
};

export function isSubcommand(name: string | undefined): name is string {
  return name !== undefined && Object.hasOwn(SUBCOMMANDS, name);
}
