// The latency proxy of the latency bench (test/servers/latency-proxy.ts): it passes bytes through
// untouched and in order, ends follow their data, and it adds at least the delay it promises: a
// round trip of 2 x D per exchange and one more on a new connection's first bytes. The checks are
// lower bounds (a timer never fires early) plus one generous upper bound that tells the handshake
// charge apart from a second one; how close it comes is the bench's calibration, not a test.

import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LatencyProxy, startLatencyProxy } from './servers/latency-proxy.ts';

let echo: Server;
let echoHost: string;
const echoSockets = new Set<Socket>();
const proxies: LatencyProxy[] = [];

beforeAll(async () => {
  // Echoes every chunk, and answers the client's end with "bye" and its own end.
  echo = createServer({ allowHalfOpen: true }, (socket) => {
    echoSockets.add(socket);
    socket.on('close', () => echoSockets.delete(socket));
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => socket.end('bye'));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoHost = `127.0.0.1:${(echo.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  echo.close();
});

async function proxy(delayMs: number): Promise<LatencyProxy> {
  const p = await startLatencyProxy(echoHost, { delayMs });
  proxies.push(p);
  return p;
}

async function open(p: LatencyProxy): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port: p.port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Writes `text` and resolves with the ms until all of it has come back. */
function exchange(socket: Socket, text: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => {
    let received = '';
    const onData = (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (received.length >= text.length) {
        socket.off('data', onData);
        expect(received).toBe(text);
        resolve(performance.now() - started);
      }
    };
    socket.on('data', onData);
    socket.write(text);
  });
}

describe('latency proxy', () => {
  for (const delayMs of [0, 20]) {
    it(`passes bytes through unchanged and in order, and the end after the data (D = ${delayMs} ms)`, async () => {
      const p = await proxy(delayMs);
      const socket = await open(p);
      const chunks = Array.from({ length: 200 }, (_, i) => `${i},`);
      let received = '';
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('utf8');
      });
      const ended = once(socket, 'end');
      for (const chunk of chunks) socket.write(chunk);
      socket.end();
      await ended;
      expect(received).toBe(`${chunks.join('')}bye`);
      socket.destroy();
      expect(p.connections).toBe(1);
    });
  }

  it('charges a new connection one round trip before its first bytes, once; each exchange costs one', async () => {
    const delayMs = 150;
    const rtt = 2 * delayMs;
    const socket = await open(await proxy(delayMs));
    const first = await exchange(socket, 'hello');
    const second = await exchange(socket, 'again');
    socket.destroy();
    // The handshake's round trip, then the exchange's.
    expect(first).toBeGreaterThanOrEqual(2 * rtt - 1);
    // The handshake is charged once: the next exchange pays its own round trip only.
    expect(second).toBeGreaterThanOrEqual(rtt - 1);
    expect(second).toBeLessThan(2 * rtt);
  });

  it('does not charge the handshake to bytes sent after it would have completed', async () => {
    const delayMs = 100;
    const socket = await open(await proxy(delayMs));
    await new Promise((resolve) => setTimeout(resolve, 3 * delayMs));
    const elapsed = await exchange(socket, 'late');
    socket.destroy();
    expect(elapsed).toBeGreaterThanOrEqual(2 * delayMs - 1);
    expect(elapsed).toBeLessThan(4 * delayMs);
  });

  it("resets the client's connection when the server resets its own", async () => {
    const socket = await open(await proxy(10));
    let code: string | undefined;
    socket.on('error', (error: NodeJS.ErrnoException) => {
      code = error.code;
    });
    await exchange(socket, 'x');
    const closed = new Promise((resolve) => socket.on('close', resolve));
    for (const s of echoSockets) s.resetAndDestroy();
    await closed;
    expect(code).toBe('ECONNRESET');
  });
});
