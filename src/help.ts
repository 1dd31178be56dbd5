// --help and the README's exit-code table are both rendered from the tables in options.ts and
// errors.ts, so they cannot drift apart.

import { SUBCOMMANDS } from './commands/index.ts';
import { EXIT_CODES } from './errors.ts';
import { envNameOf, renderFlags } from './flags.ts';
import { FLAGS } from './options.ts';

export function renderHelp(version: string): string {
  const flags = renderFlags(FLAGS);
  const subcommands = Object.values(SUBCOMMANDS).map(
    (entry) => `       secret-fetch ${entry.usage.padEnd(36)} ${entry.summary}`,
  );
  const codes = EXIT_CODES.map((row) => `  ${row.code.padEnd(6)} ${row.meaning}`);
  return [
    `secret-fetch ${version}: fetch a secret, decrypt it, write it to tmpfs and/or the environment, then exec a command.`,
    '',
    'Usage: secret-fetch [options] [-- COMMAND [ARG...]]',
    ...subcommands,
    '       (each subcommand takes --help)',
    '',
    'Example:',
    '  secret-fetch --source gs://vault/app.cfg.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k \\',
    '    --out /run/secrets/app.cfg --env -- gunicorn --chdir /app app:app',
    '',
    'Options (each also read from the variable in brackets when the flag is absent):',
    ...flags,
    '',
    'Exit codes:',
    ...codes,
    '',
  ].join('\n');
}

export function renderExitCodeTable(): string {
  return ['| code | meaning |', '| --- | --- |', ...EXIT_CODES.map((row) => `| ${row.code} | ${row.meaning} |`)].join(
    '\n',
  );
}

export function renderFlagTable(): string {
  return [
    '| flag | variable | meaning |',
    '| --- | --- | --- |',
    ...FLAGS.map((flag) => {
      const name = `${flag.short ? `-${flag.short}, ` : ''}--${flag.name}${flag.value ? ` ${flag.value}` : ''}`;
      return `| \`${name.replaceAll('|', '\\|')}\` | ${flag.env ? `\`${envNameOf(flag.name)}\`` : ''} | ${flag.help.replaceAll('|', '\\|')} |`;
    }),
  ].join('\n');
}
