// The V8 code cache of a lazily loaded group script of the Node single executable (scripts/build.ts),
// made by the Node that runs the build, which is the Node the executable is made of: V8 rejects a
// cache made by another Node.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Script } from 'node:vm';

export interface CodeCacheJob {
  /** The group's script: a function of (require, module, exports, __filename, __dirname). */
  code: string;
  cache: string;
  /** Ids to load once, so the cache also holds the functions that only compile when called. */
  warm: string[] | null;
}

export function writeCodeCache(job: CodeCacheJob): void {
  const script = new Script(readFileSync(job.code, 'utf8'), { filename: 'vendor.js' });
  if (job.warm !== null) {
    const module = { exports: {} as (id: string) => unknown };
    script.runInThisContext()(createRequire(import.meta.url), module, module.exports, '/secret-fetch', '/');
    for (const id of job.warm) module.exports(id);
  }
  writeFileSync(job.cache, script.createCachedData());
}
