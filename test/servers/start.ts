// Start the GCS, KMS and Secret Manager test servers together.
//
// Imported: `const servers = await startTestServers()`; pass `servers.env` to the code under test.
// As a script (`node test/servers/start.ts`): prints the env as KEY=value lines on stdout and stays up
// until SIGTERM/SIGINT. Another process can then seed and steer the servers over HTTP:
//   GCS  POST /_emulator/objects?bucket=B&name=N  (body = object bytes; Content-Type, x-goog-meta-* headers)
//        POST /_emulator/denyObject?bucket=B&name=N, POST /_emulator/denyBucket?bucket=B,
//        POST /_emulator/corruptNextMedia,
//        POST /_emulator/failNext {method?, path?, pathRegex?, query?, responses}, GET /_emulator/requests
//   KMS  POST /_emulator/keys {name} (symmetric), POST /_emulator/keys {name, purpose: "ASYMMETRIC_SIGN"}
//        (EC_SIGN_P256_SHA256; answers {version, pem}), POST /_emulator/denyKey {name}, POST /_emulator/corruptNextPlaintextCrc,
//        POST /_emulator/failNext {...}, GET /_emulator/requests
//   and encrypt with the real POST /v1/{key}:encrypt.
//   Secret Manager  POST /_emulator/secrets {name}, POST /_emulator/versions {secret, data (base64), state?}
//        -> {version}, POST /_emulator/versionState {secret, version, state}, POST /_emulator/alias
//        {secret, alias, version?}, POST /_emulator/denySecret {name}, POST /_emulator/grant {name, permissions},
//        POST /_emulator/corruptNextCrc, POST /_emulator/failNext {...}, GET /_emulator/requests
//   and the real API (POST /v1/projects/P/secrets?secretId=S, POST .../secrets/S:addVersion, ...).

import { type GcsServer, type GcsServerOptions, startGcsServer } from './gcs.ts';
import type { ListenOptions } from './http.ts';
import { type KmsServer, startKmsServer } from './kms.ts';
import { type SecretManagerServer, startSecretManagerServer } from './secretmanager.ts';

export interface TestServers {
  gcs: GcsServer;
  kms: KmsServer;
  secretManager: SecretManagerServer;
  /** STORAGE_EMULATOR_HOST, SECRET_FETCH_KMS_ENDPOINT and SECRET_FETCH_SECRET_MANAGER_ENDPOINT pointing at the servers. */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** `listen` applies to all three servers (see ListenOptions); `gcs` to Cloud Storage's alone. */
export async function startTestServers(
  opts: { gcs?: GcsServerOptions; listen?: ListenOptions } = {},
): Promise<TestServers> {
  const [gcs, kms, secretManager] = await Promise.all([
    startGcsServer({ ...opts.listen, ...opts.gcs }),
    startKmsServer(opts.listen),
    startSecretManagerServer(opts.listen),
  ]);
  return {
    gcs,
    kms,
    secretManager,
    env: {
      STORAGE_EMULATOR_HOST: gcs.url,
      SECRET_FETCH_KMS_ENDPOINT: kms.url,
      SECRET_FETCH_SECRET_MANAGER_ENDPOINT: secretManager.url,
    },
    async close() {
      await Promise.all([gcs.close(), kms.close(), secretManager.close()]);
    },
  };
}

if (import.meta.main) {
  const servers = await startTestServers();
  for (const [k, v] of Object.entries(servers.env)) process.stdout.write(`${k}=${v}\n`);
  const stop = () => {
    servers.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
