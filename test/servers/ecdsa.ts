// ECDSA P-256 over a digest the caller already computed, as Cloud KMS's asymmetricSign does for
// EC_SIGN_P256_SHA256. Node's crypto.sign always hashes its input (an `algorithm` of null means
// SHA-256 for EC keys), so the test server signs with this small textbook implementation instead.
// It is slow and not constant-time: fine for a test server, never for real keys. The code under test
// verifies with node:crypto, so a mistake here shows up as a signature that does not verify.

import { generateKeyPairSync, randomBytes } from 'node:crypto';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const A = P - 3n;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: Point = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};

interface Point {
  x: bigint;
  y: bigint;
}

export interface EcSigningKey {
  /** The private scalar. */
  readonly d: bigint;
  /** The SubjectPublicKeyInfo PEM, as GetPublicKey returns it. */
  readonly pem: string;
}

export function generateSigningKey(): EcSigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    d: toBigInt(Buffer.from(jwk.d as string, 'base64url')),
    pem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** A DER-encoded ECDSA signature (SEQUENCE of INTEGER r, INTEGER s) of a 32-byte digest. */
export function signDigest(key: EcSigningKey, digest: Uint8Array): Buffer {
  if (digest.length !== 32) throw new Error('a P-256 SHA-256 digest is 32 bytes');
  const z = toBigInt(digest) % N;
  for (;;) {
    const k = (toBigInt(randomBytes(40)) % (N - 1n)) + 1n;
    const r = (multiply(k, G) as Point).x % N;
    if (r === 0n) continue;
    const s = (inverse(k, N) * (z + r * key.d)) % N;
    if (s === 0n) continue;
    return derSequence([derInteger(r), derInteger(s)]);
  }
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;

/** The inverse of a modulo m (extended Euclid; a and m coprime). */
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

/** Affine point addition; undefined is the point at infinity. */
function add(p: Point | undefined, q: Point | undefined): Point | undefined {
  if (p === undefined) return q;
  if (q === undefined) return p;
  let slope: bigint;
  if (p.x === q.x) {
    if (mod(p.y + q.y, P) === 0n) return undefined;
    slope = mod((3n * p.x * p.x + A) * inverse(2n * p.y, P), P);
  } else {
    slope = mod((q.y - p.y) * inverse(q.x - p.x, P), P);
  }
  const x = mod(slope * slope - p.x - q.x, P);
  return { x, y: mod(slope * (p.x - x) - p.y, P) };
}

function multiply(k: bigint, point: Point): Point | undefined {
  let result: Point | undefined;
  let addend: Point | undefined = point;
  for (let e = k; e > 0n; e >>= 1n) {
    if (e & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if ((bytes[0] as number) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

function derSequence(parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
