// npm run demo: the main job end to end against the project's own local test servers.
// A Flask-style secrets.cfg is encrypted with (test) Cloud KMS and uploaded to a (test) bucket;
// secret-fetch fetches it, decrypts it to a tmpfs path, injects it into the environment, and
// execs a command that prints what it got, redacted.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encryptWithKms, uploadObject } from '../test/fixtures/cloud.ts';
import { startTestServers } from '../test/servers/start.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binary = join(root, 'dist', 'secret-fetch');
const key = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const object = 'gs://demo-vault/web/secrets.cfg.enc';

if (!existsSync(binary) || statSync(binary).mtimeMs < newestSource()) {
  await run(process.execPath, [join(root, 'scripts', 'build.ts')], process.env);
}

const servers = await startTestServers();
const shm = mkdtempSync('/dev/shm/secret-fetch-demo-');
try {
  servers.kms.createKey(key);
  const secretsCfg = [
    '# Flask settings, read by app.config.from_pyfile("/run/secrets/secrets.cfg")',
    `SECRET_KEY = "${randomBytes(24).toString('hex')}"`,
    `SQLALCHEMY_DATABASE_URI = "postgresql://web:${randomBytes(12).toString('hex')}@db.internal/web"`,
    `MAIL_PASSWORD = '${randomBytes(9).toString('base64')}'`,
    'DEBUG = False',
    'ADMINS = ["ops@example.com", "oncall@example.com"]',
    '',
  ].join('\n');
  const ciphertext = await encryptWithKms(servers.kms.url, key, Buffer.from(secretsCfg));
  const generation = await uploadObject(servers.gcs.url, 'demo-vault', 'web/secrets.cfg.enc', ciphertext);
  console.log(`demo: test KMS at ${servers.kms.url}, test Cloud Storage at ${servers.gcs.url}`);
  console.log(`demo: uploaded ${object} (generation ${generation}, ${ciphertext.length} bytes of KMS ciphertext)\n`);

  const cfg = join(shm, 'secrets.cfg');
  const args = [
    '--source',
    object,
    '--kms-key',
    key,
    '--out',
    cfg,
    '--env',
    '--verbose',
    '--',
    'sh',
    join(root, 'scripts', 'demo-app.sh'),
    cfg,
  ];
  console.log(`$ secret-fetch ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
  const code = await run(binary, args, {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    METADATA_SERVER_DETECTION: 'none',
    ...servers.env,
  });
  console.log(`\ndemo: secret-fetch exited ${code}`);
  process.exitCode = code;
} finally {
  rmSync(shm, { recursive: true, force: true });
  await servers.close();
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', env });
    child.on('error', reject);
    child.on('spawn', () => {
      if (command === binary) console.log(`demo: started secret-fetch as PID ${child.pid}`);
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
}

function newestSource(): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  walk(join(root, 'src'));
  return newest;
}
