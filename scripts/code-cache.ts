// The V8 code cache of a lazily loaded group script (scripts/build.ts). V8 rejects a cache made by
// another architecture's Node (an x64 cache on arm64: measured), so build.ts runs this file under
// the target's Node, through qemu-user for a foreign one: `node scripts/code-cache.ts JOBS.json`,
// JOBS a list of { code, cache, warm } (file paths, and the module ids to load once, or null).

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

if (import.meta.main) {
  for (const job of JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as CodeCacheJob[]) {
    writeCodeCache(job);
  }
}
