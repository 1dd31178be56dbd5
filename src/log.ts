// Logs go to stderr, one line each: plain text for people, or JSON lines that Cloud Logging
// reads as structured entries (`severity`, `message`). Writes are synchronous on fd 2 so a
// message is never lost when the process execs or exits right after it, and so Node's
// stream machinery (which makes pipes non-blocking) stays untouched on the fast path.

import { writeSync } from 'node:fs';

export type LogFormat = 'text' | 'json';
type Severity = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR';

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function createLogger(options: { format: LogFormat; verbose: boolean }): Logger {
  const write = (severity: Severity, message: string): void => {
    const line =
      options.format === 'json'
        ? `${JSON.stringify({ severity, message, 'logging.googleapis.com/labels': { component: 'secret-fetch' } })}\n`
        : `secret-fetch: ${severity === 'INFO' || severity === 'DEBUG' ? '' : `${severity.toLowerCase()}: `}${oneLine(message)}\n`;
    writeAll(2, line);
  };
  return {
    debug: (message) => {
      if (options.verbose) write('DEBUG', message);
    },
    info: (message) => write('INFO', message),
    warn: (message) => write('WARNING', message),
    error: (message) => write('ERROR', message),
  };
}

/** A name or path as it appears in a message: quoted when it has spaces or control characters. */
export function show(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is looked for
  return /[\s"\\\x00-\x1f\x7f]/.test(text) || text === '' ? JSON.stringify(text) : text;
}

/**
 * `message` with its control characters escaped, so a line break in a name or path that reached a
 * message unquoted still cannot start a second, forged log line.
 */
function oneLine(message: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  return message.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (c) =>
    c === '\x7f' ? '\\u007f' : JSON.stringify(c).slice(1, -1),
  );
}

/** Writes all of `text` to `fd`, retrying on EAGAIN (a parent may hand us a non-blocking pipe). */
function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  let offset = 0;
  for (let spins = 0; offset < bytes.length && spins < 1000; spins++) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (error) {
      // A parent may hand us a non-blocking stderr; retry instead of dropping the line.
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}
