// CRC32C (Castagnoli: reflected, polynomial 0x82F63B78, init and xorout 0xFFFFFFFF) for the test
// servers. Deliberately independent of src/crc32c.ts: the servers check the code under test, so they
// must not share its implementation. Known vector: crc32c("123456789") === 0xE3069283.

const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  TABLE[n] = c >>> 0;
}

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The CRC32C as Cloud Storage spells it: base64 of the 4-byte big-endian value. */
export function crc32cBase64(data: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32c(data));
  return b.toString('base64');
}
