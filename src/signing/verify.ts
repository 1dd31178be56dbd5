// --verify-key: offline checks of secret-fetch signatures with a PEM public key; no KMS call and
// no credentials at fetch time. An object reader calls requireSignature on the metadata it pinned
// (so an unsigned object is refused before its bytes are downloaded), then verifyObjectSignature on
// the bytes it downloaded from that same generation, before anything decrypts or parses them.

import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { IntegrityError, NotFoundError, PermissionError, UsageError } from '../errors.ts';
import { readSignatureMetadata, type SignedObject, signedMessage } from './message.ts';

export interface VerifyKey {
  readonly key: KeyObject;
  /** The --verify-key path as given, for messages. */
  readonly path: string;
}

/** An object as its reader saw it: where it is, and the custom metadata of the generation read. */
export interface ObjectToVerify extends SignedObject {
  readonly metadata: Readonly<Record<string, unknown>> | undefined;
}

// A PEM public key is a few hundred bytes; anything much larger is the wrong file.
const MAX_PEM_BYTES = 64 * 1024;

/** Reads and checks the --verify-key PEM: an EC P-256 public key (what EC_SIGN_P256_SHA256 keys have). */
export function loadVerifyKey(path: string, shownAs = path): VerifyKey {
  const pem = readPem(path, shownAs);
  const hint = 'give the PEM that secret-fetch sign --signing-key KEYVERSION --print-public-key prints';
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new UsageError(`--verify-key ${shownAs} holds a private key; verifying needs only the public key`, hint);
  }
  if (!pem.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new UsageError(`--verify-key ${shownAs} is not a PEM public key (no BEGIN PUBLIC KEY line)`, hint);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new UsageError(`--verify-key ${shownAs} is not a valid PEM public key`, hint);
  }
  if (!isP256(key)) {
    throw new UsageError(
      `--verify-key ${shownAs} is not an EC P-256 public key; secret-fetch signs with EC_SIGN_P256_SHA256 keys`,
      hint,
    );
  }
  return { key, path: shownAs };
}

export function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function readPem(path: string, shownAs: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NotFoundError(`--verify-key ${shownAs} does not exist`, "give the path of the signer's PEM public key");
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new PermissionError(`cannot read --verify-key ${shownAs} (${code})`, 'make it readable by this user');
    }
    throw new UsageError(`cannot open --verify-key ${shownAs} (${code})`, 'give the path of a PEM public key file');
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new UsageError(`--verify-key ${shownAs} is not a file`, 'give a PEM public key file');
    if (stat.size > MAX_PEM_BYTES) {
      throw new UsageError(`--verify-key ${shownAs} is ${stat.size} bytes, too large for a PEM public key`);
    }
    const buffer = Buffer.alloc(stat.size);
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

const describe = (object: SignedObject) => `gs://${object.bucket}/${object.object}#${object.generation}`;
const signCommand = (object: SignedObject, keyVersion = 'KEYVERSION') =>
  `secret-fetch sign gs://${object.bucket}/${object.object} --signing-key ${keyVersion}`;

/** The stored signature; throws IntegrityError when it is missing or malformed (call before downloading). */
export function requireSignature(object: ObjectToVerify): { signature: Buffer; keyVersion: string | undefined } {
  const stored = readSignatureMetadata(object.metadata);
  if (stored.kind === 'missing') {
    throw new IntegrityError(
      `${describe(object)} has no secret-fetch signature, and --verify-key refuses unsigned objects`,
      `if this object is yours, check it and sign it: ${signCommand(object)}`,
    );
  }
  if (stored.kind === 'malformed') {
    throw new IntegrityError(
      `${describe(object)} carries a malformed secret-fetch signature, so --verify-key refuses it`,
      `if this object is yours, check it and sign it again: ${signCommand(object)}`,
    );
  }
  return stored;
}

/**
 * Throws IntegrityError unless the object's stored signature verifies, with the --verify-key key, over
 * `data` together with the object's bucket, name and generation (see signedMessage).
 */
export function verifyObjectSignature(verifyKey: VerifyKey, object: ObjectToVerify, data: Uint8Array): void {
  const { signature, keyVersion } = requireSignature(object);
  let valid: boolean;
  try {
    valid = verify('sha256', signedMessage(object, data), { key: verifyKey.key, dsaEncoding: 'der' }, signature);
  } catch {
    valid = false; // not DER, or not a P-256 signature at all
  }
  if (!valid) {
    throw new IntegrityError(
      `the signature of ${describe(object)} does not verify with --verify-key ${verifyKey.path}: the object, its name or its generation changed after signing, or another key signed it`,
      `if the change is yours, check the object and sign it again: ${signCommand(object, keyVersion)}; otherwise someone else wrote to the bucket`,
    );
  }
}
