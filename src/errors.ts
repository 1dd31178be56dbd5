// Every failure secret-fetch reports is one of these. The exit-code table lives here and
// nowhere else: `--help` and the README's table are rendered from EXIT_CODES.

export interface ExitCodeRow {
  readonly code: string;
  readonly meaning: string;
}

export const EXIT = {
  usage: 64,
  format: 65,
  notFound: 66,
  unavailable: 69,
  internal: 70,
  output: 73,
  conflict: 75,
  integrity: 76,
  permission: 77,
  notExecutable: 126,
  commandNotFound: 127,
} as const;

export const EXIT_CODES: readonly ExitCodeRow[] = [
  { code: '0', meaning: 'outputs written (no command), or the command ran and exited 0' },
  { code: 'other', meaning: "the command's own exit status (after exec, or when it exits under --supervise)" },
  { code: String(EXIT.usage), meaning: 'usage: a bad flag, value or combination of flags' },
  { code: String(EXIT.format), meaning: 'format: the secret is malformed for its format (no value is shown)' },
  {
    code: String(EXIT.notFound),
    meaning:
      'not found: the object, generation, secret version, file or key does not exist (or the version is disabled)',
  },
  {
    code: String(EXIT.unavailable),
    meaning:
      'unavailable: a service failed, gave an answer it never gives (a redirect, malformed HTTP: check the endpoint), or the --timeout deadline passed',
  },
  { code: String(EXIT.internal), meaning: 'internal: a bug in secret-fetch; please report it' },
  {
    code: String(EXIT.output),
    meaning:
      'output: an output file was refused (not tmpfs, not a regular file, in a directory anyone can write, missing, full)',
  },
  {
    code: String(EXIT.conflict),
    meaning: 'conflict (push, edit): the target exists or changed since it was read; nothing was written',
  },
  { code: String(EXIT.integrity), meaning: 'integrity: decryption failed, wrong key, or a checksum did not match' },
  {
    code: String(EXIT.permission),
    meaning: 'permission: no credentials, or access denied to the object, secret or key',
  },
  { code: String(EXIT.notExecutable), meaning: 'the command exists but cannot be executed' },
  { code: String(EXIT.commandNotFound), meaning: 'the command was not found (on PATH, or at the path given)' },
  {
    code: '128+n',
    meaning:
      'stopped by signal n (e.g. 143 for SIGTERM) before the command started; under --supervise, the command died of signal n',
  },
];

/** Base class: a one-line message naming the resource, and a hint that says what to do. */
export class SecretFetchError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;

  constructor(message: string, exitCode: number, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    // JavaScriptCore (Bun) gives every Error an own numeric `line` (where it was thrown), which
    // would hide the getter below and print a bare number instead of the message: drop it.
    if (Object.hasOwn(this, 'line')) delete (this as { line?: unknown }).line;
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = hint;
  }

  /** The single line printed for this error: message, then the fix in parentheses. */
  get line(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }

  /**
   * This error with `context` before its message (e.g. the variable a reference came from): the
   * same class, exit code and hint. A copy, since one error may reach several callers.
   */
  within(context: string): this {
    const copy = Object.create(Object.getPrototypeOf(this), Object.getOwnPropertyDescriptors(this)) as this;
    copy.message = `${context}: ${this.message}`;
    Object.defineProperty(copy, 'cause', { value: this, configurable: true, writable: true });
    return copy;
  }
}

export class UsageError extends SecretFetchError {
  constructor(message: string, hint = 'see secret-fetch --help') {
    super(message, EXIT.usage, hint);
  }
}

export class FormatError extends SecretFetchError {
  constructor(message: string, hint?: string) {
    super(message, EXIT.format, hint);
  }
}

export class NotFoundError extends SecretFetchError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, EXIT.notFound, hint, options);
  }
}

export class UnavailableError extends SecretFetchError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, EXIT.unavailable, hint, options);
  }
}

export class OutputError extends SecretFetchError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, EXIT.output, hint, options);
  }
}

/** A conditional write lost: the target exists, or changed since the generation read. */
export class ConflictError extends SecretFetchError {
  constructor(message: string, hint?: string) {
    super(message, EXIT.conflict, hint);
  }
}

export class IntegrityError extends SecretFetchError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, EXIT.integrity, hint, options);
  }
}

export class PermissionError extends SecretFetchError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, EXIT.permission, hint, options);
  }
}

export class CommandError extends SecretFetchError {
  readonly command: string;

  constructor(command: string, message: string, exitCode: number, hint?: string) {
    super(message, exitCode, hint);
    this.command = command;
  }
}

/** A signal arrived before the command started: nothing was launched. */
export class InterruptedError extends SecretFetchError {
  readonly signal: string;

  constructor(signal: string, signalNumber: number) {
    super(`interrupted by ${signal} before the command started`, 128 + signalNumber);
    this.signal = signal;
  }
}
