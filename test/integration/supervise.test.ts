// --supervise with the built binary and real processes: the supervised command is
// test/fixtures/signals.py (or a shell), which prints every signal it receives.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureSeaBinary } from '../../scripts/build-bun.ts';
import { EXIT } from '../../src/errors.ts';
import { FORWARDED_SIGNALS } from '../../src/launch/signals.ts';
import { addSecretVersion, encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import { BINARY, KEY, ROOT, RUNTIME, type Running, runBinary, spawnBinary as start, tmpfsDir } from './harness.ts';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'signals.py');
const TINI = '/usr/bin/tini';

let dir: string;
let cleanup: () => void;
let secret: string;
beforeEach(() => {
  ({ dir, cleanup } = tmpfsDir());
  secret = join(dir, 'app.env');
  writeFileSync(secret, 'GREETING=hello\n');
});
afterEach(() => cleanup());

const supervise = (...extra: string[]) => ['--source', secret, '--env', '--supervise', ...extra, '--'];
/** Bun 1.4.5 cannot catch these (src/launch/signals.ts): they are neither forwarded nor fatal. */
const UNCATCHABLE: readonly string[] = RUNTIME === 'bun' ? ['SIGPWR', 'SIGSTKFLT'] : [];
const catchable = <S extends string>(signals: readonly S[]) => signals.filter((s) => !UNCATCHABLE.includes(s));

/** The first child of `pid` (unshare's child is PID 1 of the new namespace). */
function firstChild(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]);
}

describe('--supervise', () => {
  it('runs the command as a child with the secrets in its environment and clean signal dispositions', async () => {
    const result = await runBinary([
      ...supervise(),
      'sh',
      '-c',
      'echo "greeting=$GREETING parent=$(readlink /proc/$PPID/exe)"; grep -E "^Sig(Ign|Blk)" /proc/self/status',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const [first, ...status] = result.stdout.trimEnd().split('\n');
    expect(first).toBe(`greeting=hello parent=${BINARY}`);
    // Node ignores SIGPIPE and SIGXFSZ; the command must not inherit that.
    expect(status).toEqual(['SigBlk:\t0000000000000000', 'SigIgn:\t0000000000000000']);
  });

  it(`forwards each of TERM, INT, HUP, QUIT, USR1, USR2, WINCH, TTIN, TTOU, ALRM, VTALRM, PROF, XCPU, IO${RUNTIME === 'bun' ? '' : ', PWR, STKFLT'}`, async () => {
    const lastFirst = [...catchable(FORWARDED_SIGNALS).filter((s) => s !== 'SIGTERM'), 'SIGTERM'] as const;
    const run = start([...supervise('--grace', '20s'), FIXTURE], { env: { STOP_ON: 'SIGTERM' } });
    await run.line(/^ready/);
    for (const signal of lastFirst.filter((s) => s !== 'SIGTERM')) {
      process.kill(run.pid, signal);
      await run.line(new RegExp(`^got ${signal}$`));
    }
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(lastFirst.map((s) => `got ${s}`));
  });

  it('SIGALRM, SIGVTALRM, SIGPWR (Node), SIGIO no longer kill the supervisor: the command dies of them, --cleanup runs', async () => {
    for (const signal of catchable(['SIGALRM', 'SIGVTALRM', 'SIGPWR', 'SIGIO'] as const)) {
      const out = join(dir, 'app.cfg');
      const run = start([
        '--source',
        secret,
        '--out',
        out,
        '--supervise',
        '--cleanup',
        '--',
        'sh',
        '-c',
        'echo ready; exec sleep 30',
      ]);
      await run.line(/^ready/);
      await new Promise((r) => setTimeout(r, 100)); // let sh become sleep
      const sleeper = firstChild(run.pid);
      process.kill(run.pid, signal);
      const result = await run.done;
      expect(result.code, `${signal}: ${result.stderr}`).toBe(128 + constants.signals[signal]);
      expect(result.signal).toBeNull();
      expect(existsSync(`/proc/${sleeper}`)).toBe(false);
      expect(existsSync(out)).toBe(false);
    }
  });

  it.runIf(RUNTIME === 'bun')(
    'SIGSTKFLT and SIGPWR, which Bun cannot catch, neither end the supervisor nor orphan the command',
    async () => {
      const run = start([...supervise('--grace', '20s'), FIXTURE], { env: { STOP_ON: 'SIGTERM' } });
      await run.line(/^ready/);
      const command = firstChild(run.pid);
      process.kill(run.pid, constants.signals.SIGSTKFLT);
      process.kill(run.pid, constants.signals.SIGPWR);
      await new Promise((r) => setTimeout(r, 300));
      expect(existsSync(`/proc/${run.pid}`)).toBe(true);
      expect(existsSync(`/proc/${command}`)).toBe(true);
      process.kill(run.pid, 'SIGTERM');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGTERM']);
    },
  );

  it.runIf(RUNTIME === 'bun')(
    'in a terminal, the command has its own process group in the foreground: Ctrl-C reaches it once',
    async () => {
      const result = await runBinary([join(ROOT, 'test', 'fixtures', 'pty-run.py'), BINARY, ...supervise(), FIXTURE], {
        command: 'python3',
        env: { STOP_ON: 'SIGTERM' },
      });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.match(/got SIGINT/g)).toEqual(['got SIGINT']);
      expect(result.stdout).toMatch(/got SIGTERM\n\nstatus 0\n$/);
    },
  );

  it('forwards SIGINT, and exits with the status the command chose', async () => {
    const run = start([...supervise(), FIXTURE], { env: { EXIT_ON_STOP: '3' } });
    await run.line(/^ready/);
    process.kill(run.pid, 'SIGINT');
    const result = await run.done;
    expect(result.stdout).toContain('got SIGINT\n');
    expect(result.code, result.stderr).toBe(3);
  });

  it('exits with the status of a command that exits on its own', async () => {
    const result = await runBinary([...supervise(), 'sh', '-c', 'exit 7']);
    expect(result.code, result.stderr).toBe(7);
    expect(result.stderr).toBe('');
  });

  it('exits 128+n when the command dies of signal n', async () => {
    const killed = await runBinary([...supervise(), 'sh', '-c', 'kill -KILL $$']);
    expect(killed.code).toBe(137);
    // A command with the default disposition dies of the forwarded SIGTERM: 143.
    const run = start([...supervise(), 'sh', '-c', 'echo ready; exec sleep 30']);
    await run.line(/^ready/);
    await new Promise((r) => setTimeout(r, 100)); // let sh become sleep
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(143);
    expect(result.signal).toBeNull();
  });

  it('sends SIGKILL when the command outlives --grace after SIGTERM', async () => {
    const run = start([...supervise('--grace', '600ms'), FIXTURE, 'stubborn']);
    await run.line(/^ready/);
    const sent = Date.now();
    process.kill(run.pid, 'SIGTERM');
    await run.line(/^got SIGTERM$/);
    const result = await run.done;
    const elapsed = Date.now() - sent;
    expect(result.code).toBe(137);
    expect(elapsed).toBeGreaterThanOrEqual(550);
    expect(elapsed).toBeLessThan(5000);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^secret-fetch: warning: .*signals\.py.* did not exit within --grace 600ms of SIGTERM/),
    ]);
  });

  describe('a crash of secret-fetch itself stops the command instead of orphaning it', () => {
    // SECRET_FETCH_TEST_CRASH=1 is a test hook: SIGUSR1 then throws in the supervisor, SIGUSR2
    // leaves a rejected promise unhandled.
    const crash = { SECRET_FETCH_TEST_CRASH: '1' };
    const gone = (pid: number) => !existsSync(`/proc/${pid}`);
    let pids: number[] = [];
    afterEach(() => {
      for (const pid of pids) if (!gone(pid)) process.kill(pid, 'SIGKILL'); // an orphan left by a failure
      pids = [];
    });
    const readyPid = async (run: Running) => {
      const pid = Number(/pid=(\d+)/.exec(await run.line(/^ready pid=/))?.[1]);
      pids.push(pid);
      return pid;
    };

    it('an uncaught exception: SIGTERM to the command, --cleanup, then 70 once it has exited', async () => {
      const out = join(dir, 'app.cfg');
      const run = start(['--source', secret, '--out', out, '--supervise', '--cleanup', '--', FIXTURE], {
        env: { ...crash, EXIT_ON_STOP: '3' },
      });
      const pid = await readyPid(run);
      process.kill(run.pid, 'SIGUSR1');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(EXIT.internal);
      expect(result.stdout).toContain('got SIGTERM\n');
      expect(gone(pid)).toBe(true);
      expect(existsSync(out)).toBe(false);
      expect(result.stderr.trimEnd().split('\n')).toEqual([
        'secret-fetch: error: internal error: Error; please report this with the command line you used',
        expect.stringMatching(
          new RegExp(
            `^secret-fetch: warning: stopping .*signals\\.py.* \\(pid ${pid}\\) before exiting: SIGTERM, then SIGKILL after --grace 10s$`,
          ),
        ),
      ]);
    });

    it('an unhandled rejection: a command that ignores SIGTERM gets SIGKILL after --grace', async () => {
      const run = start([...supervise('--grace', '500ms'), FIXTURE, 'stubborn'], { env: crash });
      const pid = await readyPid(run);
      process.kill(run.pid, 'SIGUSR2');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(EXIT.internal);
      expect(result.stdout).toContain('got SIGTERM\n');
      expect(gone(pid)).toBe(true);
      const lines = result.stderr.trimEnd().split('\n');
      expect(lines[0]).toBe(
        'secret-fetch: error: internal error: Error; please report this with the command line you used',
      );
      expect(lines.at(-1)).toMatch(/did not exit within --grace 500ms of SIGTERM: sending SIGKILL$/);
    });
  });

  it('--cleanup removes the --out file when the command exits, and after a SIGTERM', async () => {
    const out = join(dir, 'app.cfg');
    const args = ['--source', secret, '--out', out, '--supervise', '--cleanup', '--'];
    const normal = await runBinary([...args, 'sh', '-c', `cat ${out}`]);
    expect(normal.code, normal.stderr).toBe(0);
    expect(normal.stdout).toBe('GREETING=hello\n');
    expect(existsSync(out)).toBe(false);

    const run = start([...args, FIXTURE]);
    await run.line(/^ready/);
    expect(readFileSync(out, 'utf8')).toBe('GREETING=hello\n');
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(out)).toBe(false);

    // Without --cleanup the file stays.
    const kept = await runBinary(['--source', secret, '--out', out, '--supervise', '--', 'true']);
    expect(kept.code, kept.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
  });

  it('--cleanup removes the file from the directory it was written in, even if its path leads elsewhere by then', async () => {
    const first = join(dir, 'first');
    const second = join(dir, 'second');
    mkdirSync(first);
    mkdirSync(second);
    writeFileSync(join(second, 'app.cfg'), 'not ours\n');
    const link = join(dir, 'link');
    symlinkSync(first, link);
    const run = start(['--source', secret, '--out', join(link, 'app.cfg'), '--supervise', '--cleanup', '--', FIXTURE]);
    await run.line(/^ready/);
    expect(readFileSync(join(first, 'app.cfg'), 'utf8')).toBe('GREETING=hello\n');
    // The path now leads to another directory, where a file of the same name is someone else's.
    rmSync(link);
    symlinkSync(second, link);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(join(first, 'app.cfg'))).toBe(false);
    expect(readFileSync(join(second, 'app.cfg'), 'utf8')).toBe('not ours\n');
  });

  it('refuses --grace and --cleanup without --supervise, and --supervise without a command', async () => {
    for (const args of [
      ['--source', secret, '--env', '--grace', '5s', '--', 'true'],
      ['--source', secret, '--out', join(dir, 'x'), '--cleanup', '--', 'true'],
      ['--source', secret, '--out', join(dir, 'x'), '--supervise'],
    ]) {
      const result = await runBinary(args);
      expect(result.code, args.join(' ')).toBe(EXIT.usage);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    }
  });

  it('the Node build (dist/secret-fetch-sea) as PID 1 says in one stderr line how to add an init, and still supervises', async () => {
    const result = await runBinary(
      [
        '--pid',
        '--fork',
        '--mount-proc',
        ensureSeaBinary(),
        ...supervise(),
        'sh',
        '-c',
        'echo "ppid=$PPID greeting=$GREETING"',
      ],
      { command: 'unshare' },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toEqual(expect.stringMatching(/^ppid=1 greeting=hello\n$/));
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^secret-fetch: warning: running as PID 1: Node cannot reap orphaned grandchildren.*tini.*docker run --init.*shareProcessNamespace: true/,
    );
  });

  // A daemonising grandchild: its parent exits at once, so it is re-parented to secret-fetch.
  const orphan = '/bin/sh -c "/bin/sleep 0.5 >/dev/null 2>&1 & echo \\$!"';
  const zombiesOf =
    'for s in /proc/[0-9]*/stat; do read -r p c st pp rest < "$s" 2>/dev/null && [ "$pp" = "$1" ] && [ "$st" = Z ] && echo "zombie $p"; done';

  it.runIf(RUNTIME === 'bun')(
    "as PID 1, reaps orphaned grandchildren and still exits with the command's own status",
    async () => {
      const script = `o=$(${orphan}); sleep 1; set -- 1; ${zombiesOf}; echo "orphan $o checked"; exit 7`;
      const result = await runBinary(['--pid', '--fork', '--mount-proc', BINARY, ...supervise(), 'sh', '-c', script], {
        command: 'unshare',
      });
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(/^orphan \d+ checked\n$/);
      expect(result.code).toBe(7);
    },
  );

  it.runIf(RUNTIME === 'bun')(
    'reaps the children it was exec\'d with (sh -c "job & exec secret-fetch ..."), supervising or as a sidecar',
    async () => {
      /** Zombies whose parent is `pid`, from /proc/N/stat (after the name: the state, then the parent). */
      const zombies = (pid: number) =>
        readdirSync('/proc')
          .filter((name) => /^\d+$/.test(name))
          .filter((name) => {
            try {
              const fields = readFileSync(`/proc/${name}/stat`, 'utf8')
                .replace(/^.*\) /, '')
                .split(' ');
              return fields[0] === 'Z' && fields[1] === String(pid);
            } catch {
              return false;
            }
          });
      for (const mode of [
        ['--env', '--supervise', '--', 'sleep', '5'],
        ['--out', join(dir, 'out.env'), '--refresh', '1m'],
      ]) {
        const run = start(['-c', 'sleep 0.2 & exec "$@"', 'sh', BINARY, '--source', secret, ...mode], {
          command: 'sh',
        });
        await new Promise((r) => setTimeout(r, 1000));
        expect(zombies(run.pid), mode.join(' ')).toEqual([]);
        process.kill(run.pid, 'SIGTERM');
        await run.done;
      }
    },
  );

  it.runIf(RUNTIME === 'bun')(
    'not as PID 1, is the subreaper of its command: orphans come to it and are reaped',
    async () => {
      const script = `o=$(${orphan}); set -- $PPID; echo "parent of orphan $(cut -d' ' -f4 /proc/$o/stat)"; sleep 1; ${zombiesOf}; ls -d /proc/$o 2>/dev/null || echo gone`;
      const run = start([...supervise(), 'sh', '-c', script]);
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe(`parent of orphan ${run.pid}\ngone\n`);
    },
  );

  it('as PID 1, forwards SIGTERM from outside the namespace and exits with the status', async () => {
    const run = start(['--pid', '--fork', '--mount-proc', BINARY, ...supervise(), FIXTURE], {
      command: 'unshare',
      env: { EXIT_ON_STOP: '5' },
    });
    await run.line(/^ready pid=\d+$/);
    process.kill(firstChild(run.pid), 'SIGTERM');
    const result = await run.done;
    expect(result.stdout).toContain('got SIGTERM\n');
    expect(result.code, result.stderr).toBe(5);
  });

  it.runIf(existsSync(TINI))(
    'under tini as PID 1: no hint, signals reach the command, statuses come back',
    async () => {
      const run = start(['--pid', '--fork', '--mount-proc', TINI, '--', BINARY, ...supervise(), FIXTURE], {
        command: 'unshare',
        env: { EXIT_ON_STOP: '4' },
      });
      await run.line(/^ready pid=\d+$/);
      const tini = firstChild(run.pid);
      process.kill(tini, 'SIGHUP');
      await run.line(/^got SIGHUP$/);
      process.kill(tini, 'SIGTERM');
      const result = await run.done;
      expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGHUP', 'got SIGTERM']);
      expect(result.code, result.stderr).toBe(4);
      expect(result.stderr).toBe('');

      // A command killed by a signal: secret-fetch exits 128+n, and tini passes that on.
      const killed = await runBinary(
        ['--pid', '--fork', '--mount-proc', TINI, '--', BINARY, ...supervise(), 'sh', '-c', 'kill -USR2 $$'],
        { command: 'unshare' },
      );
      expect(killed.code, killed.stderr).toBe(140);
      expect(killed.stderr).toBe('');
    },
  );
});

describe('--refresh', () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  let n = 0;
  beforeAll(async () => {
    servers = await startTestServers();
    servers.kms.createKey(KEY);
  });
  afterAll(async () => servers?.close());

  /** A fresh object per test, KMS-encrypted like the real thing. */
  const upload = async (name: string, text: string) =>
    uploadObject(servers.gcs.url, 'vault', name, await encryptWithKms(servers.kms.url, KEY, Buffer.from(text)));
  const fresh = async (text: string) => {
    const name = `rotating/${++n}.env.enc`;
    await upload(name, text);
    return { name, args: ['--source', `gs://vault/${name}`, '--kms-key', KEY] };
  };
  const metadataReads = () => servers.gcs.requests.filter((r) => r.method === 'GET' && r.query.alt !== 'media').length;
  const downloads = () => servers.gcs.requests.filter((r) => r.method === 'GET' && r.query.alt === 'media').length;

  it('rotates: new generation, the file is replaced atomically, then the command gets SIGHUP', async () => {
    const { name, args } = await fresh('GREETING=one\n');
    const out = join(dir, 'out.env');
    const run = start([...args, '--out', out, '--supervise', '--refresh', '200ms', '--', FIXTURE], {
      env: { ...servers.env, READ_ON_HUP: out },
    });
    await run.line(/^ready/);
    const before = statSync(out).ino;
    servers.gcs.requests.length = 0;
    await new Promise((r) => setTimeout(r, 500));
    // Polling reads metadata only; nothing changed, so nothing is downloaded.
    expect(metadataReads()).toBeGreaterThanOrEqual(1);
    expect(downloads()).toBe(0);

    const generation = await upload(name, 'GREETING=two\n');
    await run.line(/^file GREETING=two$/);
    expect(readFileSync(out, 'utf8')).toBe('GREETING=two\n');
    expect(statSync(out).ino).not.toBe(before); // renamed into place, not rewritten
    expect(statSync(out).mode & 0o777).toBe(0o400);
    expect(readdirSync(dir).sort()).toEqual(['app.env', 'out.env']);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGHUP', 'file GREETING=two', 'got SIGTERM']);
    expect(result.stderr).toContain(`(now generation ${generation}) changed: rewrote ${out}; sent SIGHUP`);
    expect(result.stderr).not.toContain('two');
  });

  it('with --on-change restart, the command starts again with the new environment', async () => {
    const { name, args } = await fresh('GREETING=one\n');
    const run = start(
      [...args, '--env', '--supervise', '--refresh', '200ms', '--on-change', 'restart', '--', FIXTURE],
      {
        env: { ...servers.env, SHOW_ENV: 'GREETING', EXIT_ON_STOP: '0' },
      },
    );
    await run.line(/^ready pid=\d+ GREETING=one$/);
    await upload(name, 'GREETING=two\n');
    await run.line(/^ready pid=\d+ GREETING=two$/);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.map((l) => l.replace(/pid=\d+ /, ''))).toEqual([
      'ready GREETING=one',
      'got SIGTERM',
      'ready GREETING=two',
      'got SIGTERM',
    ]);
    expect(lines[0]).not.toBe(lines[2]); // a new process
  });

  describe('references in the environment', () => {
    const PROJECT = 'refresh-project';
    /** A fresh Secret Manager secret with `text` as version 1; `add` adds the next version. */
    const secretWith = async (text: string) => {
      const id = `rotating-${++n}`;
      const name = `projects/${PROJECT}/secrets/${id}`;
      await addSecretVersion(servers.secretManager.url, name, Buffer.from(text));
      return {
        uri: `sm://${PROJECT}/${id}`,
        add: (next: string) => addSecretVersion(servers.secretManager.url, name, Buffer.from(next)),
      };
    };
    const gets = (id: string) =>
      servers.secretManager.requests.filter(
        (r) => r.method === 'GET' && r.path.includes(`/secrets/${id}/versions/`) && !r.path.endsWith(':access'),
      );

    it('with --on-change restart, a rotated reference reaches the command as its new value; no --source needed', async () => {
      const greeting = await secretWith('one');
      const run = start(['--supervise', '--refresh', '200ms', '--on-change', 'restart', '--', FIXTURE], {
        env: { ...servers.env, GREETING: greeting.uri, SHOW_ENV: 'GREETING', EXIT_ON_STOP: '0' },
      });
      await run.line(/^ready pid=\d+ GREETING=one$/);
      await greeting.add('two');
      await run.line(/^ready pid=\d+ GREETING=two$/);
      process.kill(run.pid, 'SIGTERM');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      expect(
        result.stdout
          .trimEnd()
          .split('\n')
          .map((l) => l.replace(/pid=\d+ /, '')),
      ).toEqual(['ready GREETING=one', 'got SIGTERM', 'ready GREETING=two', 'got SIGTERM']);
      expect(result.stderr).toContain(`$GREETING (${greeting.uri} (now version 2)) changed; restarting the command`);
      expect(result.stderr).not.toMatch(/\btwo\b/);
    });

    it('rewrites a ?destination= file atomically, then signals; a pinned reference is never polled', async () => {
      const rotating = await secretWith('GREETING=one\n');
      const pinned = await secretWith('PINNED=1\n');
      const file = join(dir, 'greeting.env');
      const run = start(['--supervise', '--refresh', '200ms', '--', FIXTURE], {
        env: {
          ...servers.env,
          GREETING_FILE: `${rotating.uri}?destination=${file}`,
          PINNED: `${pinned.uri}#1`,
          READ_ON_HUP: file,
        },
      });
      await run.line(/^ready/);
      const before = statSync(file).ino;
      await rotating.add('GREETING=two\n');
      await run.line(/^file GREETING=two$/);
      expect(statSync(file).ino).not.toBe(before); // renamed into place
      expect(statSync(file).mode & 0o777).toBe(0o400);
      expect(gets(pinned.uri.split('/').at(-1) as string)).toEqual([]);
      process.kill(run.pid, 'SIGTERM');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain(
        `$GREETING_FILE (${rotating.uri} (now version 2)) changed: rewrote ${file}; sent SIGHUP to the command`,
      );
    });

    it('polls the references at once, not one after another', async () => {
      const [first, second] = [await secretWith('one'), await secretWith('uno')];
      const run = start(['--supervise', '--refresh', '200ms', '--on-change', 'restart', '--', FIXTURE], {
        env: { ...servers.env, GREETING: first.uri, OTHER: second.uri, SHOW_ENV: 'GREETING', EXIT_ON_STOP: '0' },
      });
      await run.line(/^ready pid=\d+ GREETING=one$/);
      // Each poll's answer waits (up to 2 s) for the other poll to arrive: one after another, the
      // first would wait in vain.
      const arrived: Record<string, () => void> = {};
      const saw: Record<string, boolean> = {};
      const barrier = (mine: string, other: string) => ({
        run: async () => {
          const theirs = new Promise<boolean>((resolve) => {
            arrived[mine] = () => resolve(true);
            setTimeout(() => resolve(false), 2000);
          });
          arrived[other]?.();
          saw[mine] = await Promise.race([theirs, ...(arrived[other] ? [Promise.resolve(true)] : [])]);
        },
      });
      for (const [mine, other] of [
        [first, second],
        [second, first],
      ] as const) {
        const id = mine.uri.split('/').at(-1) as string;
        servers.secretManager.failNext({ method: 'GET', path: new RegExp(`/secrets/${id}/versions/latest$`) }, [
          barrier(mine.uri, other.uri),
        ]);
      }
      await first.add('two');
      await run.line(/^ready pid=\d+ GREETING=two$/);
      process.kill(run.pid, 'SIGTERM');
      expect((await run.done).code).toBe(0);
      expect(saw).toEqual({ [first.uri]: true, [second.uri]: true });
    });

    it('a failed poll of a reference keeps the command and its value, warns naming the variable, and retries', async () => {
      const greeting = await secretWith('one');
      const id = greeting.uri.split('/').at(-1) as string;
      const run = start(['--supervise', '--refresh', '200ms', '--on-change', 'restart', '--', FIXTURE], {
        env: { ...servers.env, GREETING: greeting.uri, SHOW_ENV: 'GREETING', EXIT_ON_STOP: '0' },
      });
      await run.line(/^ready pid=\d+ GREETING=one$/);
      servers.secretManager.failNext({ path: new RegExp(`/secrets/${id}/versions/`) }, [{ status: 403 }]);
      await run.errorLine(/refresh failed/);
      await greeting.add('two');
      await run.line(/^ready pid=\d+ GREETING=two$/);
      process.kill(run.pid, 'SIGTERM');
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(
        /^secret-fetch: warning: refresh failed, keeping the current secrets and command: \$GREETING: permission denied .*; next try in /m,
      );
    });
  });

  it('with --on-change exit, stops the command and exits with its status', async () => {
    const { name, args } = await fresh('GREETING=one\n');
    const run = start([...args, '--env', '--supervise', '--refresh', '200ms', '--on-change', 'exit', '--', FIXTURE], {
      env: { ...servers.env, EXIT_ON_STOP: '9' },
    });
    await run.line(/^ready/);
    await upload(name, 'GREETING=two\n');
    const result = await run.done;
    expect(result.stdout).toContain('got SIGTERM');
    expect(result.code, result.stderr).toBe(9);
  });

  it('a failing refresh keeps the old file and the command, warns, and retries', async () => {
    const { name, args } = await fresh('GREETING=one\n');
    const out = join(dir, 'out.env');
    const run = start([...args, '--out', out, '--supervise', '--refresh', '200ms', '--', FIXTURE], {
      env: { ...servers.env, READ_ON_HUP: out },
    });
    await run.line(/^ready/);
    // A new generation that is not valid dotenv: fetched, decrypted, refused by the parser.
    await upload(name, "GREETING='unterminated\n");
    await new Promise((r) => setTimeout(r, 1000));
    expect(readFileSync(out, 'utf8')).toBe('GREETING=one\n');
    expect(readdirSync(dir).sort()).toEqual(['app.env', 'out.env']);
    // Then the operator fixes it: the next retry picks it up.
    await upload(name, 'GREETING=three\n');
    await run.line(/^file GREETING=three$/);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGHUP', 'file GREETING=three', 'got SIGTERM']);
    const warnings = result.stderr.split('\n').filter((l) => l.includes('warning'));
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings[0]).toMatch(
      /^secret-fetch: warning: refresh failed, keeping the current secrets and command: .*unterminated/,
    );
    expect(result.stderr).not.toContain('three');
  });

  it('with --verify-key, a new generation is refused until it is signed, then rotated in', async () => {
    const signer = servers.kms.createSigningKey(
      'projects/demo/locations/global/keyRings/apps/cryptoKeys/rotation-signer',
    );
    const pem = join(dir, 'signer.pem');
    writeFileSync(pem, servers.kms.publicKeyPem(signer));
    const sign = async (uri: string) => {
      const signed = await runBinary(['sign', uri, '--signing-key', signer], { env: servers.env });
      expect(signed.code, signed.stderr).toBe(0);
    };
    const { name, args } = await fresh('GREETING=one\n');
    await sign(`gs://vault/${name}`);
    const out = join(dir, 'out.env');
    const run = start(
      [...args, '--verify-key', pem, '--out', out, '--supervise', '--refresh', '200ms', '--', FIXTURE],
      {
        env: { ...servers.env, READ_ON_HUP: out },
      },
    );
    await run.line(/^ready/);
    const generation = await upload(name, 'GREETING=two\n');
    // Wait until a refresh has looked at the unsigned generation (and refused it: no download).
    const readsOfNew = () => servers.gcs.requests.filter((r) => r.query.generation === generation);
    while (readsOfNew().length === 0) await new Promise((r) => setTimeout(r, 50));
    expect(readsOfNew().filter((r) => r.query.alt === 'media')).toHaveLength(0);
    expect(readFileSync(out, 'utf8')).toBe('GREETING=one\n');
    await sign(`gs://vault/${name}`);
    await run.line(/^file GREETING=two$/);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(
      new RegExp(
        `warning: refresh failed, keeping the current secrets and command: .*#${generation} has no secret-fetch signature`,
      ),
    );
  });

  it('sidecar: no command, --refresh keeps the file fresh, writes --ready-file, exits 0 on TERM', async () => {
    const { name, args } = await fresh('GREETING=one\n');
    const out = join(dir, 'out.env');
    const ready = join(dir, 'ready');
    const probe = () => runBinary(['probe', '--ready-file', ready]);
    const before = await probe();
    expect(before.code).toBe(1);
    expect(before.stderr).toBe(`secret-fetch: probe: not ready: ${ready} does not exist yet\n`);
    const run = start([...args, '--out', out, '--refresh', '200ms', '--ready-file', ready, '--verbose'], {
      env: servers.env,
    });
    const deadline = Date.now() + 10_000;
    while (!existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(readFileSync(out, 'utf8')).toBe('GREETING=one\n'); // in place before the ready file
    expect(readFileSync(ready, 'utf8')).toMatch(/^ready \d{4}-/);
    expect(await probe()).toMatchObject({ code: 0, stderr: '' });
    const inode = statSync(out).ino;

    const generation = await upload(name, 'GREETING=two\n');
    while (readFileSync(out, 'utf8') !== 'GREETING=two\n' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(readFileSync(out, 'utf8')).toBe('GREETING=two\n');
    expect(statSync(out).ino).not.toBe(inode); // renamed into place
    expect(statSync(out).mode & 0o777).toBe(0o400);
    expect(readdirSync(dir).sort()).toEqual(['app.env', 'out.env', 'ready']);
    process.kill(run.pid, 'SIGHUP'); // ignored: no command to forward it to
    await new Promise((r) => setTimeout(r, 100));
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.signal).toBeNull();
    expect(result.stderr).toContain(`(now generation ${generation}) changed: rewrote ${out}; sidecar`);
    expect(result.stderr).not.toContain('two\n');
    expect(result.stderr).not.toMatch(/warning|error/);
  });

  it('sidecar: SIGINT exits 0 too; --on-change and a missing --out are refused', async () => {
    const { args } = await fresh('GREETING=one\n');
    const out = join(dir, 'out.env');
    const ready = join(dir, 'ready');
    const run = start([...args, '--out', out, '--refresh', '1s', '--ready-file', ready], { env: servers.env });
    const deadline = Date.now() + 10_000;
    while (!existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    process.kill(run.pid, 'SIGINT');
    expect((await run.done).code).toBe(0);
    for (const extra of [
      ['--out', out, '--refresh', '1s', '--on-change', 'exit'],
      ['--env', '--refresh', '1s'],
    ]) {
      const result = await runBinary([...args, ...extra], { env: servers.env });
      expect(result.code, extra.join(' ')).toBe(EXIT.usage);
    }
    expect((await runBinary(['probe'])).code).toBe(EXIT.usage);
  });

  it('refuses --refresh without --supervise, and --on-change without --refresh', async () => {
    for (const extra of [
      ['--refresh', '1s', '--', 'true'],
      ['--supervise', '--on-change', 'restart', '--', 'true'],
      ['--supervise', '--refresh', '1s', '--on-change', 'SIGNOPE', '--', 'true'],
    ]) {
      const result = await runBinary(['--source', secret, '--env', ...extra]);
      expect(result.code, extra.join(' ')).toBe(EXIT.usage);
    }
  });
});
