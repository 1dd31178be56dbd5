// --ca-file: the one way to trust a private CA (an emulator behind TLS, a corporate TLS proxy). Its
// certificates are added to the system roots for the thin clients' requests; nothing in the
// environment can add to them or switch certificate checks off.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.ts';
import { show } from '../log.ts';

/** A CA bundle is a few KiB to a few hundred; anything far larger is not one. */
const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----/g;

/** The PEM certificates in `path`; throws a UsageError (64) naming the file if it holds none, or a bad one. */
export function readCaFile(path: string): string[] {
  const flag = `--ca-file ${show(path)}`;
  let text: string;
  try {
    const data = readFileSync(path);
    if (data.length > MAX_CA_FILE_BYTES) throw Object.assign(new Error(), { code: 'EFBIG' });
    text = data.toString('utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new UsageError(`${flag} cannot be read (${code})`, 'give the path of a PEM bundle of CA certificates');
  }
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) {
    throw new UsageError(`${flag} holds no PEM certificate`, 'give a bundle of "-----BEGIN CERTIFICATE-----" blocks');
  }
  blocks.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch {
      throw new UsageError(`${flag}: certificate ${i + 1} is not a valid X.509 certificate`, 'check the bundle');
    }
  });
  return blocks;
}
