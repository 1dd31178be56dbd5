// writeSecret fails closed: a berglas:// object is never written without a key (berglas reads its
// body as an envelope, so a plaintext upload would be a readable secret under a berglas name).

import { describe, expect, it } from 'vitest';
import type { Clients } from '../../src/google/clients.ts';
import type { Logger } from '../../src/log.ts';
import { writeSecret } from '../../src/publish/index.ts';
import { createRetry, Deadline } from '../../src/retry.ts';
import { parseSourceRef } from '../../src/sources/reference.ts';

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

describe('writeSecret', () => {
  it('refuses a berglas:// target without a key before any call', async () => {
    const calls: string[] = [];
    const clients = new Proxy({} as Clients, {
      get: (_, name) => () => {
        calls.push(String(name));
        throw new Error(`called ${String(name)}`);
      },
    });
    const ref = parseSourceRef('berglas://vault/app.env');
    if (ref.scheme !== 'berglas') throw new Error('unreachable');
    const retry = createRetry({ log: quiet, deadline: new Deadline(1_000) });
    await expect(
      writeSecret(Buffer.from('A=1\n'), undefined, { ref, ifGenerationMatch: '0' }, 'app.env', {
        clients,
        retry,
        log: quiet,
      }),
    ).rejects.toThrow(/berglas:\/\/vault\/app\.env is written only encrypted/);
    expect(calls).toEqual([]);
  });
});
