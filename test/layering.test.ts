// The start-path and layering rules, enforced here rather than noticed in the bench:
// - the executable's main script (bundled as scripts/bundle-plan.ts plans it) holds no operator
//   command and loads no cloud library at start: each of those is reached only by import();
// - imports run one way: stage folders never import a command, run.ts, options.ts or cli.ts; a
//   command never imports run.ts, cli.ts or another command.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { INTERNAL_GROUPS, internalExternal, VENDOR_PATTERN, vendorExternal } from '../scripts/bundle-plan.ts';
import { SUBCOMMANDS } from '../src/commands/index.ts';

const root = join(import.meta.dirname, '..');

/** Every .ts file under src/, relative to the repository root. */
function sourceFiles(dir = join(root, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [relative(root, join(dir, entry.name))]
        : [],
  );
}

// `import ... from '...'`, `export ... from '...'` and `import('...')`; a declaration that imports
// only types (`import type`, or every name marked `type`) is erased by the build and does not count.
const STATIC = /^(?:import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)';/gms;
const DYNAMIC = /\bimport\(\s*'([^']+)'\s*\)/g;

/** The src/ files `file` imports at run time (static or dynamic), relative to the root. */
function importsOf(file: string, source = readFileSync(join(root, file), 'utf8')): string[] {
  const found: string[] = [];
  for (const [, typeOnly, names, target] of source.matchAll(STATIC)) {
    const allTypes =
      /^\{[^}]*\}$/s.test(names ?? '') &&
      (names ?? '')
        .slice(1, -1)
        .split(',')
        .every((n) => /^\s*(type\s|$)/.test(n));
    if (typeOnly === undefined && !allTypes) found.push(target as string);
  }
  for (const [, target] of source.matchAll(DYNAMIC)) found.push(target as string);
  return found
    .filter((target) => target.startsWith('.'))
    .map((target) => relative(root, resolve(dirname(join(root, file)), target)));
}

const COMMAND_MODULES = new Set(Object.values(SUBCOMMANDS).map((entry) => `src/commands/${entry.module}`));
const TOP = new Set(['src/cli.ts', 'src/run.ts', 'src/options.ts']);
/** Above the stages too, beside cli.ts: --help renders the registry and the main run's flags. */
const ABOVE = new Set([...TOP, 'src/help.ts']);
/** The registry: the one module that loads each command (by import(), on first use). */
const REGISTRY = 'src/commands/index.ts';

/** The command a file belongs to: src/commands/X.ts, or a part of it under src/commands/X/. */
function commandOf(file: string): string | undefined {
  const match = /^src\/commands\/([^/]+?)(?:\.ts|\/.*)$/.exec(file);
  return match ? `src/commands/${match[1]}.ts` : undefined;
}

/** Why `file` may not import `target`, or undefined if it may. */
function violation(file: string, target: string): string | undefined {
  if (file === REGISTRY) return undefined;
  const command = commandOf(file);
  if (command === undefined) {
    if (ABOVE.has(file)) return undefined;
    if (target.startsWith('src/commands/')) return 'a stage imports a command';
    if (TOP.has(target)) return `a stage imports ${target}`;
    return undefined;
  }
  if (target === 'src/run.ts' || target === 'src/cli.ts') return `a command imports ${target}`;
  if (COMMAND_MODULES.has(target) && target !== command) return 'a command imports another command';
  return undefined;
}

describe('imports run one way', () => {
  it('holds for every file in src/', () => {
    const found = sourceFiles().flatMap((file) =>
      importsOf(file).flatMap((target) => {
        const why = violation(file, target);
        return why === undefined ? [] : [`${file} -> ${target}: ${why}`];
      }),
    );
    expect(found).toEqual([]);
  });

  it.each([
    ['src/sources/gcs.ts', "import { run } from '../run.ts';", 'a stage imports src/run.ts'],
    ['src/sinks/file.ts', "const m = await import('../options.ts');", 'a stage imports src/options.ts'],
    ['src/google/rest.ts', "import { SHOW } from '../commands/show.ts';", 'a stage imports a command'],
    ['src/commands/edit.ts', "import { PUSH } from './push.ts';", 'a command imports another command'],
    ['src/commands/doctor/kms.ts', "import { run } from '../../run.ts';", 'a command imports src/run.ts'],
  ])('would catch %s importing what it must not (%s)', (file, line, why) => {
    const targets = importsOf(file, line);
    expect(targets.map((target) => violation(file, target))).toEqual([why]);
  });

  it('ignores imports of types only, which the build erases', () => {
    expect(importsOf('src/sources/gcs.ts', "import type { Options } from '../options.ts';")).toEqual([]);
    expect(importsOf('src/sources/gcs.ts', "import { type Options } from '../options.ts';")).toEqual([]);
    expect(importsOf('src/sources/gcs.ts', "import { type Options, x } from '../options.ts';")).toEqual([
      'src/options.ts',
    ]);
  });
});

describe("the executable's main script", () => {
  let meta: Metafile;
  beforeAll(async () => {
    const result = await build({
      entryPoints: [join(root, 'src', 'cli.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node24',
      supported: { 'dynamic-import': false },
      write: false,
      external: ['bun:ffi'], // src/launch/sys.ts: only ever loaded under Bun
      metafile: true,
      logLevel: 'silent',
      outfile: join(root, 'build', 'layering-check.cjs'),
      plugins: [vendorExternal, internalExternal(root)],
    });
    meta = result.metafile;
  });

  it('holds no operator command: each is in a lazily loaded group', () => {
    const lazy = Object.values(INTERNAL_GROUPS).flat();
    expect(lazy.length).toBeGreaterThan(0);
    expect(Object.keys(meta.inputs).filter((file) => lazy.includes(file))).toEqual([]);
  });

  it('derives its groups from the command registry: every command reaching the pipeline is lazy', () => {
    const lazy = new Set(Object.values(INTERNAL_GROUPS).flat());
    for (const entry of Object.values(SUBCOMMANDS)) {
      expect(lazy.has(`src/commands/${entry.module}`)).toBe(entry.group !== 'main');
    }
    // What the registry's loaders import is what it declares.
    const loaded = meta.inputs['src/commands/index.ts']?.imports.map((i) =>
      i.path.replace(/^@secret-fetch\/[^/]+\//, ''),
    );
    expect(new Set(loaded)).toEqual(COMMAND_MODULES);
  });

  it('loads no cloud library and no command at start: only import() reaches them', () => {
    // What runs at start: the entry and everything it reaches without an import().
    const eager = new Set<string>();
    const visit = (file: string): void => {
      if (eager.has(file)) return;
      eager.add(file);
      for (const i of meta.inputs[file]?.imports ?? []) if (!i.external && i.kind !== 'dynamic-import') visit(i.path);
    };
    visit('src/cli.ts');
    expect(eager.has('src/run.ts')).toBe(true);
    const loadedAtStart = [...eager].flatMap((file) =>
      (meta.inputs[file]?.imports ?? [])
        .filter((i) => i.external && i.kind !== 'dynamic-import')
        .filter((i) => VENDOR_PATTERN.test(i.path) || i.path.startsWith('@secret-fetch/'))
        .map((i) => `${file} -> ${i.path}`),
    );
    expect(loadedAtStart).toEqual([]);
  });
});
