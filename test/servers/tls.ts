// TLS for the test servers, which speak plain HTTP: a CA made at run time with the openssl CLI, and
// a TLS front that terminates TLS with a certificate for 127.0.0.1 that this CA signs and passes the
// bytes on to a test server. The binary trusts the CA through --ca-file / SECRET_FETCH_CA_FILE.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer } from 'node:tls';

export interface TestCertificates {
  /** The CA's certificate (PEM): the file to give --ca-file. */
  caFile: string;
  ca: Buffer;
  /** The server's key and certificate (PEM), for 127.0.0.1 (subjectAltName IP:127.0.0.1). */
  key: Buffer;
  cert: Buffer;
}

/** A P-256 CA and a server certificate for 127.0.0.1 it signs, valid two days, written into `dir`. */
export function makeTestCertificates(dir: string): TestCertificates {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const days = ['-days', '2'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', ...days, '-subj', '/CN=secret-fetch test CA');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    ...days,
    '-extfile',
    'san.ext',
  );
  return {
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem')),
    key: readFileSync(join(dir, 'server.key')),
    cert: readFileSync(join(dir, 'server.pem')),
  };
}

export interface TlsFront {
  readonly port: number;
  /** "127.0.0.1:PORT". */
  readonly host: string;
  /** "https://127.0.0.1:PORT". */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 for TLS with `certificates`, and passes each connection's plaintext to
 * `upstream` ("HOST:PORT" of a plain HTTP test server) over one loopback connection of its own, so
 * keep-alive and connection counts are the client's.
 */
export async function startTlsFront(upstream: string, certificates: TestCertificates): Promise<TlsFront> {
  const { hostname, port: upstreamPort } = new URL(`tcp://${upstream}`);
  const sockets = new Set<Socket>();
  const server = createServer({ key: certificates.key, cert: certificates.cert, noDelay: true }, (socket) => {
    const up = connect({ host: hostname, port: Number(upstreamPort), noDelay: true });
    for (const s of [socket, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    socket.pipe(up).pipe(socket);
    socket.on('error', () => up.destroy());
    up.on('error', () => socket.destroy());
    socket.on('close', () => up.destroy());
    up.on('close', () => socket.destroy());
  });
  // A client that gives up mid-handshake (an untrusted certificate) is not the front's failure.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    host: `127.0.0.1:${port}`,
    url: `https://127.0.0.1:${port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closed;
    },
  };
}
