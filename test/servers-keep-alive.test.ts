// Keep-alive on the test servers (ListenOptions in test/servers/http.ts): by default they advertise
// a one-second idle limit, with which Node's agent reuses no connection; keepAliveTimeoutMs: 0
// advertises none, so a client reuses its connection as it would with the real services (the
// latency bench counts the round trips a reuse saves).

import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServers, type TestServers } from './servers/start.ts';

let byDefault: TestServers;
let reusable: TestServers;

beforeAll(async () => {
  [byDefault, reusable] = await Promise.all([
    startTestServers(),
    startTestServers({ listen: { keepAliveTimeoutMs: 0 } }),
  ]);
});
afterAll(async () => {
  await Promise.all([byDefault?.close(), reusable?.close()]);
});

/** Two GETs one after the other on one keep-alive agent: was the second one's socket reused, and the Keep-Alive header. */
async function twoRequests(url: string): Promise<{ reused: boolean; keepAlive: string | undefined }> {
  const agent = new Agent({ keepAlive: true });
  const get = () =>
    new Promise<{ reused: boolean; keepAlive: string | undefined }>((resolve, reject) => {
      const req = request(`${url}/`, { agent }, (res) => {
        res.resume();
        // The socket goes back to the agent's pool on the next tick after the end.
        res.on('end', () =>
          setTimeout(
            () => resolve({ reused: req.reusedSocket, keepAlive: res.headers['keep-alive'] as string | undefined }),
            10,
          ),
        );
      });
      req.on('error', reject);
      req.end();
    });
  await get();
  const second = await get();
  agent.destroy();
  return second;
}

const urls = (s: TestServers) => [s.gcs.url, s.kms.url, s.secretManager.url];

describe('test servers: keep-alive', () => {
  it('by default advertise a one-second limit, and a Node client opens a new connection per request', async () => {
    for (const url of urls(byDefault))
      expect(await twoRequests(url)).toEqual({ reused: false, keepAlive: 'timeout=1' });
  });

  it('with keepAliveTimeoutMs: 0 advertise no limit, and a Node client reuses its connection', async () => {
    for (const url of urls(reusable)) expect(await twoRequests(url)).toEqual({ reused: true, keepAlive: undefined });
  });
});
