// A user-space TCP latency proxy for the latency bench (npm run bench:latency): the kernels here
// have no netem. Every chunk is held `delayMs` before it is passed on, in each direction, so one
// request and its answer cost a round trip of 2 x delayMs; and since a client's connect() to it
// completes at once on loopback, the bytes a new connection sends are first held one more round
// trip, the price of the TCP handshake a real network charges before the first byte can leave.
//
//   client ──(connect free, +1 RTT before its first byte)──> proxy ──> target
//   client <──────────────── +delayMs per chunk ────────────── proxy <── target
//
// It passes bytes through untouched (TLS runs end to end through it) and keeps their order. Only
// the timing of data is modelled: no bandwidth limit, no loss, resets are passed on at once.

import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LatencyProxyOptions {
  /** One-way delay in ms: a request and its answer cost 2 x delayMs, a new connection 2 x delayMs more. */
  delayMs: number;
}

export interface LatencyProxy {
  readonly port: number;
  /** "127.0.0.1:PORT". */
  readonly host: string;
  readonly delayMs: number;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** A proxy on 127.0.0.1 (OS-assigned port) to `target` ("HOST:PORT"). */
export async function startLatencyProxy(target: string, options: LatencyProxyOptions): Promise<LatencyProxy> {
  const { hostname, port: targetPort } = new URL(`tcp://${target}`);
  const delayMs = options.delayMs;
  if (!(delayMs >= 0)) throw new Error(`latency proxy: delayMs must be >= 0, not ${delayMs}`);
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    connections++;
    const accepted = performance.now();
    const upstream = connect({ host: hostname, port: Number(targetPort), allowHalfOpen: true, noDelay: true });
    for (const [socket, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // A reset or a failure on one side resets the other at once.
      socket.on('error', () => {
        if (!other.destroyed) other.resetAndDestroy();
      });
    }
    // The client's first bytes could not have left before its handshake's round trip.
    delayedPipe(client, upstream, delayMs, accepted + 2 * delayMs);
    delayedPipe(upstream, client, delayMs, accepted);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    host: `127.0.0.1:${port}`,
    delayMs,
    get connections() {
      return connections;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}

/**
 * Passes `from`'s data and its end to `to`, each `delayMs` after it arrived (or after `notBefore`,
 * if later), in order. One timer serves the queue, so equal delays cannot reorder chunks.
 */
function delayedPipe(from: Socket, to: Socket, delayMs: number, notBefore: number): void {
  const queue: { at: number; chunk: Buffer | 'end' }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;

  const deliver = (chunk: Buffer | 'end') => {
    if (to.destroyed) return;
    if (chunk === 'end') to.end();
    else to.write(chunk);
  };
  const flush = () => {
    timer = undefined;
    // Timers may fire a little early against performance.now(): what is not due waits on.
    const now = performance.now();
    for (let next = queue[0]; next !== undefined && next.at <= now; next = queue[0]) {
      queue.shift();
      deliver(next.chunk);
    }
    schedule();
  };
  const schedule = () => {
    const next = queue[0];
    if (timer === undefined && next !== undefined) timer = setTimeout(flush, Math.max(0, next.at - performance.now()));
  };
  const push = (chunk: Buffer | 'end') => {
    const now = performance.now();
    const at = Math.max(now, notBefore) + delayMs;
    // Without a delay, pass it on now: the D = 0 runs pay no timer.
    if (at <= now && queue.length === 0) deliver(chunk);
    else {
      queue.push({ at, chunk });
      schedule();
    }
  };
  const end = () => {
    if (ended) return;
    ended = true;
    push('end');
  };

  from.on('data', (chunk: Buffer) => push(chunk));
  from.on('end', end);
  // A side that closes without a clean end (a reset, a destroy) still ends the other, after its data.
  from.on('close', end);
  to.on('close', () => {
    if (timer !== undefined) clearTimeout(timer);
    queue.length = 0;
  });
}
