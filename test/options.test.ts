import { describe, expect, it } from 'vitest';
import { EXIT, UsageError } from '../src/errors.ts';
import { parseDuration, parseMode } from '../src/flags.ts';
import { parseOnChange } from '../src/launch/mode.ts';
import { parseInvocation } from '../src/options.ts';

const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';

function options(argv: string[], env: Record<string, string> = {}) {
  const invocation = parseInvocation(argv, env);
  if (invocation.kind !== 'run') throw new Error(`expected a run, got ${invocation.kind}`);
  return invocation.options;
}

function usageError(argv: string[], env: Record<string, string> = {}): UsageError {
  try {
    parseInvocation(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT.usage);
    return error as UsageError;
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`);
}

describe('parseInvocation', () => {
  it('builds the ENTRYPOINT example into one plan', () => {
    const o = options([
      '--source',
      'gs://vault/secrets.cfg.enc',
      '--kms-key',
      KEY,
      '--out',
      '/run/secrets/app.cfg',
      '--',
      'gunicorn',
      '--chdir',
      '/app',
      'app:app',
    ]);
    expect(o.sources).toHaveLength(1);
    expect(o.sources[0]).toMatchObject({
      uri: 'gs://vault/secrets.cfg.enc',
      ref: { scheme: 'gs', bucket: 'vault', object: 'secrets.cfg.enc' },
      decrypt: { kind: 'kms', key: KEY },
      format: 'pyfile',
      out: '/run/secrets/app.cfg',
    });
    // Flags after -- belong to the command, even ones secret-fetch also has.
    expect(o.launch).toEqual({ kind: 'exec', command: ['gunicorn', '--chdir', '/app', 'app:app'], chdir: undefined });
    expect(o.fileMode).toBe(0o400);
    expect(o.injectEnv).toBe(false);
    expect(o.timeoutMs).toBe(30_000);
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('reads SECRET_FETCH_* variables when a flag is absent, and flags win', () => {
    const env = {
      SECRET_FETCH_SOURCE: 'file:/etc/app.env',
      SECRET_FETCH_ENV: 'true',
      SECRET_FETCH_MODE: '0440',
      SECRET_FETCH_TIMEOUT: '2m',
      SECRET_FETCH_KMS_ENDPOINT: 'http://127.0.0.1:9',
    };
    const o = options(['--', 'app'], env);
    expect(o.sources[0]?.ref).toEqual({ scheme: 'file', path: '/etc/app.env' });
    expect(o.injectEnv).toBe(true);
    expect(o.fileMode).toBe(0o440);
    expect(o.timeoutMs).toBe(120_000);
    expect(o.endpoints.kms).toBe('http://127.0.0.1:9');
    expect(options(['--source', 'other.json', '--mode', '0600', '--', 'app'], env).sources[0]?.uri).toBe('other.json');
    expect(options(['--source', 'other.json', '--mode', '0600', '--', 'app'], env).fileMode).toBe(0o600);
  });

  it('takes STORAGE_EMULATOR_HOST as the storage endpoint', () => {
    expect(
      options(['--source', 'a.env', '--env'], { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:4443' }).endpoints.storage,
    ).toBe('http://127.0.0.1:4443');
  });

  it('takes STORAGE_EMULATOR_HOST without a scheme as http://, as the Go and Python clients do', () => {
    expect(options(['--source', 'a.env', '--env'], { STORAGE_EMULATOR_HOST: 'localhost:9199' }).endpoints.storage).toBe(
      'http://localhost:9199',
    );
    expect(() => options(['--source', 'a.env', '--env'], { STORAGE_EMULATOR_HOST: 'localhost:9199/x' })).toThrow(
      /^STORAGE_EMULATOR_HOST=localhost:9199\/x is not an emulator address$/,
    );
    expect(
      options(['--source', 'a.env', '--env', '--storage-endpoint', 'https://storage.example'], {
        STORAGE_EMULATOR_HOST: 'localhost:9199',
      }).endpoints.storage,
    ).toBe('https://storage.example');
  });

  it('pairs --out, --kms-key and --format with sources in order', () => {
    const o = options([
      '--source',
      'gs://bkt/one.enc',
      '--source',
      'gs://bkt/two.enc',
      '--out',
      '/s/one',
      '--out',
      '/s/two',
      '--kms-key',
      KEY,
      '--format',
      'json',
      '--format',
      'yaml',
    ]);
    expect(o.sources.map((s) => [s.out, s.decrypt.kind === 'kms' && s.decrypt.key, s.format])).toEqual([
      ['/s/one', KEY, 'json'],
      ['/s/two', KEY, 'yaml'],
    ]);
  });

  it('detects the format from the name after stripping .enc', () => {
    const formatOf = (source: string) =>
      options(['--source', source, '--kms-key', KEY, '--out', '/dev/shm/x']).sources[0]?.format;
    expect(formatOf('gs://bkt/app.env.enc')).toBe('dotenv');
    expect(formatOf('gs://bkt/dir/app.json')).toBe('json');
    expect(formatOf('./x.yaml.encrypted')).toBe('yaml');
    expect(formatOf('gs://bkt/app.toml')).toBe('toml');
    expect(formatOf('file:settings.py')).toBe('pyfile');
    expect(formatOf('gs://bkt/tls.key')).toBe('raw');
  });

  it('answers --help and --version before validating anything else', () => {
    expect(parseInvocation(['--help', '--source', ''], {}).kind).toBe('help');
    expect(parseInvocation(['-h'], {}).kind).toBe('help');
    expect(parseInvocation(['--version'], { SECRET_FETCH_MODE: 'bad' }).kind).toBe('version');
  });

  it.each([
    [['--source', 'gs://bkt/o.env'], /nothing would receive the secret/],
    [['--out', '/dev/shm/x'], /no --source/],
    [[], /nothing to do/],
    [['--source', 'gs://bkt/o.bin', '--env'], /--env needs entries.*raw.*--format dotenv\|json\|yaml\|toml\|pyfile,/],
    [['--source', 'a.env', '--env', 'gunicorn'], /unexpected argument "gunicorn".*--/],
    [['--source', 'a.env', '--env', '--'], /nothing follows --/],
    [['--source', 'a.env', '--env', '--bogus'], /Unknown option '--bogus'/],
    [['--source', 'a.env', '--out', '/s/a', '--format', 'ini'], /--format ini is not known/],
    [['--source', 'a.env', '--out', '/s/a', '--mode', '644'], /world-readable/],
    [['--source', 'a.env', '--out', '/s/a', '--mode', '0602'], /world-writable/],
    [['--source', 'a.env', '--out', '/s/a', '--mode', 'rw'], /not an octal file mode/],
    [['--source', 'a.env', '--out', '/s/a', '--timeout', '0'], /not a duration/],
    [['--source', 'a.env', '--out', '/s/a', '--uid', 'app'], /not a numeric id/],
    [['--source', 'a.env', '--out', '/s/a', '--kms-key', 'k'], /not a key name/],
    [['--source', 'a.env', '--source', 'b.env', '--out', '/s/a'], /1 --out for 2 --source/],
    [['--source', 'a.env', '--source', 'b.env', '--out', '/s/a', '--out', '/s/a'], /given for two sources/],
    [['--source', 'a.env', '--out', '/s/a', '--chdir', '/app'], /--chdir without a command/],
    [['--source', 'a.env', '--out', '/s/a', '--log-format', 'xml'], /--log-format xml/],
    [['--source', 'a.env', '--out', '/s/a', '--kms-endpoint', 'localhost:1'], /not an endpoint URL/],
    [['--source', 's3://b/o', '--out', '/s/a'], /s3:\/\/ is not supported/],
    [['--source', 'gs://B/o', '--out', '/s/a'], /not a valid bucket name/],
    [['--source', 'gs://bkt/o#x', '--out', '/s/a'], /not an object generation/],
  ])('refuses %j', (argv, message) => {
    expect(usageError(argv).line).toMatch(message);
  });

  it('refuses a malformed boolean variable, naming it', () => {
    expect(usageError(['--source', 'a.env'], { SECRET_FETCH_ENV: 'maybe' }).message).toMatch(
      /SECRET_FETCH_ENV="maybe" is not a boolean/,
    );
  });
});

describe('--verify-key', () => {
  it('is a path kept as given (read at run time), from the flag or SECRET_FETCH_VERIFY_KEY', () => {
    const base = ['--source', 'gs://vault/a.env', '--env'];
    expect(options([...base]).verifyKey).toBeUndefined();
    expect(options([...base, '--verify-key', 'keys/signer.pem']).verifyKey).toBe('keys/signer.pem');
    expect(options(base, { SECRET_FETCH_VERIFY_KEY: '/etc/signer.pem' }).verifyKey).toBe('/etc/signer.pem');
    expect(options([...base, '--verify-key', 'a.pem'], { SECRET_FETCH_VERIFY_KEY: 'b.pem' }).verifyKey).toBe('a.pem');
    // berglas:// objects live in Cloud Storage and carry the signature the same way.
    expect(options(['--source', 'berglas://vault/db', '--out', '/dev/shm/x', '--verify-key', 'k.pem']).verifyKey).toBe(
      'k.pem',
    );
  });

  it.each([
    [['--source', 'gs://vault/a.env', '--env', '--verify-key', ''], /--verify-key is empty/],
    [['--verify-key', 'k.pem', '--', 'app'], /--verify-key without --source/],
    [['--source', '/run/a.env', '--env', '--verify-key', 'k.pem'], /cannot check \/run\/a\.env: only gs:\/\//],
    [['--source', 'file:a.env', '--env', '--verify-key', 'k.pem'], /cannot check a\.env/],
    [['--source', 'sm://my-project/db', '--out', '/dev/shm/x', '--verify-key', 'k.pem'], /cannot check sm:\/\//],
    [
      ['--source', 'gs://vault/a.env', '--source', '/run/b.env', '--env', '--verify-key', 'k.pem'],
      /cannot check \/run\/b\.env/,
    ],
  ])('refuses %j', (argv, message) => {
    expect(usageError(argv).message).toMatch(message);
  });
});

describe('parseDuration and parseMode', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['30', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration('timeout', text)).toBe(ms));

  it.each(['', 's', '-1s', '1d', '25h'])('%j is not a duration', (text) => {
    expect(() => parseDuration('timeout', text)).toThrow(UsageError);
  });

  it.each([
    ['0400', 0o400],
    ['400', 0o400],
    ['0440', 0o440],
    ['0600', 0o600],
  ])('mode %s', (text, mode) => expect(parseMode(text)).toBe(mode));
});

describe('--supervise, --grace, --cleanup, --refresh, --on-change', () => {
  const base = ['--source', '/run/app.env', '--out', '/dev/shm/app.env'];

  it('defaults to exec, and to a 10s grace and SIGHUP when supervising', () => {
    const exec = options([...base, '--', 'app']);
    expect(exec.launch).toEqual({ kind: 'exec', command: ['app'], chdir: undefined });
    const supervised = options([...base, '--supervise', '--cleanup', '--refresh', '5m', '--', 'app']);
    expect(supervised.launch).toEqual({
      kind: 'supervise',
      command: ['app'],
      chdir: undefined,
      cleanup: true,
      graceMs: 10_000,
      refresh: { intervalMs: 300_000, onChange: { kind: 'signal', signal: 'SIGHUP' } },
    });
    expect(options([...base, '--supervise', '--', 'app']).launch).toMatchObject({ refresh: undefined });
  });

  it('reads the variables, and on-change actions and signal names', () => {
    const o = options([...base, '--', 'app'], {
      SECRET_FETCH_SUPERVISE: '1',
      SECRET_FETCH_GRACE: '2s',
      SECRET_FETCH_REFRESH: '30s',
      SECRET_FETCH_ON_CHANGE: 'usr1',
    });
    expect(o.launch).toMatchObject({
      kind: 'supervise',
      graceMs: 2000,
      refresh: { intervalMs: 30_000, onChange: { kind: 'signal', signal: 'SIGUSR1' } },
    });
    expect(parseOnChange('restart')).toEqual({ kind: 'restart' });
    expect(parseOnChange('exit')).toEqual({ kind: 'exit' });
    expect(parseOnChange('SIGTERM')).toEqual({ kind: 'signal', signal: 'SIGTERM' });
  });

  it('runs as a sidecar with --refresh and no command, and takes --ready-file in any mode', () => {
    expect(options([...base, '--refresh', '1m', '--ready-file', '/dev/shm/ready'])).toMatchObject({
      launch: { kind: 'sidecar', refresh: { intervalMs: 60_000 } },
      readyFile: '/dev/shm/ready',
    });
    expect(options([...base]).launch).toEqual({ kind: 'init' });
    expect(options([...base], { SECRET_FETCH_READY_FILE: '/dev/shm/r' }).readyFile).toBe('/dev/shm/r');
    expect(options([...base, '--', 'app']).readyFile).toBeUndefined();
    expect(usageError([...base, '--refresh', '1s', '--on-change', 'exit']).message).toMatch(/sidecar has nothing/);
    expect(usageError(['--source', '/run/app.env', '--env', '--refresh', '1s']).message).toMatch(/needs --out/);
    expect(usageError([...base, '--refresh', '1s', '--cleanup']).message).toMatch(/--cleanup needs --supervise/);
  });

  it.each([
    [['--supervise'], /--supervise without a command/],
    [['--grace', '1s', '--', 'app'], /--grace needs --supervise/],
    [['--cleanup', '--', 'app'], /--cleanup needs --supervise/],
    [['--refresh', '1s', '--', 'app'], /--refresh needs --supervise/],
    [['--supervise', '--on-change', 'exit', '--', 'app'], /--on-change needs --refresh/],
    [['--supervise', '--refresh', 'soon', '--', 'app'], /--refresh soon is not a duration/],
    [['--supervise', '--refresh', '1s', '--on-change', 'reload', '--', 'app'], /--on-change reload is not/],
    [['--supervise', '--refresh', '1s', '--on-change', 'SIGKILL', '--', 'app'], /--on-change SIGKILL is not/],
  ])('refuses %j', (extra, message) => {
    expect(usageError([...base, ...extra]).message).toMatch(message);
  });

  it('refuses --cleanup without --out', () => {
    expect(usageError(['--source', '/run/app.env', '--env', '--supervise', '--cleanup', '--', 'app']).message).toMatch(
      /--cleanup without --out/,
    );
  });
});

describe('credentials', () => {
  const run = ['--source', 'gs://vault/o.env', '--env', '--', 'true'];
  const plan = (env: Record<string, string>) => options(run, env).credentials;

  it('waits for a metadata server only where one is expected, and never with a credentials file', () => {
    expect(plan({})).toEqual({
      metadataServer: 'http://169.254.169.254',
      expectMetadataServer: false,
      credentialsFile: undefined,
      loopbackAuth: false,
    });
    const expected: Record<string, string>[] = [
      { KUBERNETES_SERVICE_HOST: '10.0.0.1' },
      { K_SERVICE: 'app' },
      { GCE_METADATA_HOST: 'metadata.google.internal' },
      { METADATA_SERVER_DETECTION: 'ping-only' },
      { METADATA_SERVER_DETECTION: 'Assume-Present' },
    ];
    for (const env of expected) {
      expect(plan(env).expectMetadataServer, JSON.stringify(env)).toBe(true);
    }
    expect(plan({ KUBERNETES_SERVICE_HOST: '10.0.0.1', METADATA_SERVER_DETECTION: 'none' }).expectMetadataServer).toBe(
      false,
    );
    expect(plan({ K_SERVICE: 'app', GOOGLE_APPLICATION_CREDENTIALS: '/k.json' })).toMatchObject({
      expectMetadataServer: false,
      credentialsFile: '/k.json',
    });
  });

  it('names the metadata server as google-auth-library finds it: GCE_METADATA_IP, then GCE_METADATA_HOST', () => {
    expect(plan({ GCE_METADATA_HOST: '127.0.0.1:8080' }).metadataServer).toBe('http://127.0.0.1:8080');
    expect(plan({ GCE_METADATA_HOST: 'h:1', GCE_METADATA_IP: '10.1.2.3' }).metadataServer).toBe('http://10.1.2.3');
  });

  it('refuses an unknown METADATA_SERVER_DETECTION, and the loopback test hook with an endpoint off loopback', () => {
    expect(usageError(run, { METADATA_SERVER_DETECTION: 'maybe' }).message).toBe(
      'METADATA_SERVER_DETECTION=maybe is not known',
    );
    const hook = { SECRET_FETCH_TEST_LOOPBACK_AUTH: '1' };
    expect(plan({ ...hook, STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9000' }).loopbackAuth).toBe(true);
    expect(
      options([...run.slice(0, 3), '--kms-endpoint', 'http://[::1]:9', ...run.slice(3)], hook).credentials.loopbackAuth,
    ).toBe(true);
    expect(
      usageError([...run.slice(0, 3), '--kms-endpoint', 'http://kms.internal', ...run.slice(3)], hook).message,
    ).toBe(
      'SECRET_FETCH_TEST_LOOPBACK_AUTH would send credentials in clear text to --kms-endpoint http://kms.internal',
    );
  });
});
