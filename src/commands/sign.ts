// `secret-fetch sign gs://BUCKET/OBJECT --signing-key KEYVERSION`: signs the object's exact bytes,
// with its bucket, name and generation (src/signing/message.ts), using a Cloud KMS
// EC_SIGN_P256_SHA256 key version, and stores the signature in the object's own metadata, where
// `--verify-key` finds it. The bytes are only hashed: nothing is decrypted, written or printed.

import { verify } from 'node:crypto';
import { writeSync } from 'node:fs';
import { IntegrityError, UsageError } from '../errors.ts';
import type { FlagSpec } from '../flags.ts';
import { readObject } from '../google/storage.ts';
import { fetchPublicKey, SIGNING_ALGORITHM, signDigestWithKms } from '../signing/kms-sign.ts';
import { KEY_VERSION_NAME, messageDigest, signatureMetadata, signedMessage } from '../signing/message.ts';
import { storeSignature } from '../signing/store-signature.ts';
import { describeSource, parseSourceRef, type SourceRef } from '../sources/reference.ts';
import { described, OPERATOR_MAX_BYTES, parseSubcommand, remoteContext, type SubcommandSpec } from './common.ts';
import type { Subcommand } from './index.ts';

const EXAMPLE_KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/signer/cryptoKeyVersions/1';

const FLAGS = [
  {
    name: 'signing-key',
    type: 'string',
    value: 'KEYVERSION',
    help: 'projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N',
  },
  {
    name: 'print-public-key',
    type: 'boolean',
    help: "print the key version's public key (PEM) for --verify-key; sign nothing",
  },
] as const satisfies readonly FlagSpec[];

export const SIGN: SubcommandSpec<typeof FLAGS> = {
  name: 'sign',
  about: `Usage: secret-fetch sign gs://BUCKET/OBJECT[#GENERATION] --signing-key KEYVERSION
       secret-fetch sign --signing-key KEYVERSION --print-public-key

Signs the object's exact bytes, together with its bucket, name and generation, with a Cloud KMS
${SIGNING_ALGORITHM} key version, and stores the signature in the object's metadata
(secret-fetch-signature), only if the object is still the generation and metageneration that was
read. Prints the signed object with its generation. A fetch with --verify-key PEM then refuses the
object unless the signature verifies: a new upload, even of old signed bytes, needs a new signature.
The object is only hashed: nothing is decrypted, and no secret is written or printed.`,
  flags: FLAGS,
  more: `Needs roles/cloudkms.signerVerifier on the key, and storage.objects.get and storage.objects.update
on the object (roles/storage.objectUser). Fetching with --verify-key needs neither.

Examples:
  secret-fetch sign gs://vault/app/secrets.cfg.enc --signing-key ${EXAMPLE_KEY}
  secret-fetch sign --signing-key ${EXAMPLE_KEY} --print-public-key > signer.pem
  secret-fetch --source gs://vault/app/secrets.cfg.enc --verify-key signer.pem \\
    --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k --env -- gunicorn app:app`,
  positionals: { min: 0, max: 1 },
};

export const signCommand: Subcommand = {
  ...described(SIGN),
  async run(argv, context) {
    const parsed = parseSubcommand(SIGN, argv, context);
    if (parsed === undefined) return 0;
    const keyVersion = parsed.values['signing-key'];
    const printPublicKey = parsed.values['print-public-key'] === true;
    const uri = parsed.positionals[0];
    if (keyVersion === undefined) {
      throw new UsageError('sign needs --signing-key KEYVERSION', `e.g. --signing-key ${EXAMPLE_KEY}`);
    }
    if (!KEY_VERSION_NAME.test(keyVersion)) {
      throw new UsageError(
        `--signing-key ${keyVersion} is not a key version name`,
        'asymmetric signing needs a version: projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N',
      );
    }
    if (printPublicKey === (uri !== undefined)) {
      throw new UsageError(
        printPublicKey ? '--print-public-key signs nothing, but an object was given' : 'sign needs an object to sign',
        'give gs://BUCKET/OBJECT, or --print-public-key alone',
      );
    }
    const ref = uri === undefined ? undefined : objectRef(uri);

    const { clients, retry, deadline } = remoteContext(parsed);
    const { log } = parsed;
    const work = async (): Promise<number> => {
      const kms = await clients.kms(retry);
      // First, so a wrong, missing or denied key fails before the object is read.
      const publicKey = await fetchPublicKey(kms, keyVersion, retry);
      if (ref === undefined) {
        writeSync(1, publicKey.pem.endsWith('\n') ? publicKey.pem : `${publicKey.pem}\n`);
        return 0;
      }
      const read = await readObject(ref, { clients, retry, log, maxBytes: OPERATOR_MAX_BYTES });
      const object = { bucket: ref.bucket, object: ref.object, generation: read.generation };
      const message = signedMessage(object, read.data);
      read.data.fill(0); // only its hash is needed from here on
      const signature = await signDigestWithKms(kms, keyVersion, messageDigest(message), retry);
      // Never store a signature that --verify-key would refuse.
      if (!verify('sha256', message, { key: publicKey.key, dsaEncoding: 'der' }, signature)) {
        throw new IntegrityError(
          `the signature from ${keyVersion} does not verify with its own public key; nothing was stored`,
          'the key version may have been replaced meanwhile; run again, and report it if it persists',
        );
      }
      const metageneration = await storeSignature(ref, read, signatureMetadata(signature, keyVersion), {
        clients,
        retry,
        log,
      });
      const signed = `gs://${ref.bucket}/${ref.object}#${read.generation}`;
      log.debug(`signed ${signed} with ${keyVersion}; its metageneration is now ${metageneration}`);
      writeSync(1, `${signed}\n`);
      return 0;
    };
    return await deadline.race(work());
  },
};

function objectRef(uri: string): Extract<SourceRef, { scheme: 'gs' }> {
  let ref: SourceRef;
  try {
    ref = parseSourceRef(uri);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(error.message.replace(/^--source /, 'sign '), error.hint);
    throw error;
  }
  if (ref.scheme !== 'gs') {
    throw new UsageError(`sign ${describeSource(ref)}: only gs:// objects can be signed`, 'give gs://BUCKET/OBJECT');
  }
  return ref;
}
