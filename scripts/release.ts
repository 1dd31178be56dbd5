// npm run release: compile dist/secret-fetch-linux-x64 and dist/secret-fetch-linux-arm64 with the
// pinned Bun, each with its architecture's pinned runtime and no download (scripts/build-bun.ts),
// then write beside them a CycloneDX 1.5 SBOM of what the binaries hold (dist/secret-fetch.cdx.json)
// and dist/SHA256SUMS (`cd dist && sha256sum -c SHA256SUMS`). `--no-build` reuses the last build
// (those binaries and build/release/*.meta.json).
//
// The SBOM lists the npm packages Bun put into each binary (its --metafile's inputs), each with its
// version and license from its own package.json, the Bun runtimes, and each binary as a file (with
// its SHA-256) that depends on its packages and its own architecture's Bun.

import { createHash, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCHES, type Arch, buildWithBun, bunRuntime } from './build-bun.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

interface PackageJson {
  name: string;
  version: string;
  license?: string | { type?: string };
  description?: string;
}

interface Component {
  type: 'library' | 'application' | 'platform' | 'file';
  'bom-ref': string;
  group?: string;
  name: string;
  version: string;
  description?: string;
  licenses?: ({ license: { id: string } } | { license: { name: string } } | { expression: string })[];
  hashes?: { alg: 'SHA-256'; content: string }[];
  purl?: string;
}

/** A released binary: its file name in dist/, its SHA-256, the runtime it is made of and what it bundles. */
export interface Binary {
  file: string;
  sha256: string;
  /** The directory of its runtime's npm package (@oven/bun-linux-ARCH). */
  runtime: string;
  /** The files bundled into it (its metafile's inputs). */
  inputs: string[];
}

/** dist/secret-fetch-linux-ARCH */
export function binaryName(arch: Arch): string {
  return `secret-fetch-linux-${arch}`;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** pkg:npm/%40scope/name@version, as the purl spec encodes npm scopes. */
export function npmPurl(name: string, version: string): string {
  const encoded = name.startsWith('@') ? `%40${name.slice(1)}` : name;
  return `pkg:npm/${encoded}@${encodeURIComponent(version)}`;
}

const SPDX_ID = /^[A-Za-z0-9.+-]+$/;

function licenses(pkg: PackageJson): Component['licenses'] {
  const license = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type;
  if (!license) return undefined;
  if (SPDX_ID.test(license)) return [{ license: { id: license } }];
  if (/\b(AND|OR|WITH)\b/.test(license)) return [{ expression: license.replace(/^\((.*)\)$/, '($1)') }];
  return [{ license: { name: license } }];
}

function component(pkg: PackageJson, type: Component['type']): Component {
  const purl = npmPurl(pkg.name, pkg.version);
  const [group, name] = pkg.name.startsWith('@') ? (pkg.name.split('/') as [string, string]) : [undefined, pkg.name];
  const c: Component = { type, 'bom-ref': purl, name, version: pkg.version, purl };
  if (group) c.group = group;
  // Every @oven/bun-* package calls itself "the macOS arm64 binary": a runtime's name says enough.
  if (pkg.description && type !== 'platform') c.description = pkg.description;
  const l = licenses(pkg);
  if (l) c.licenses = l;
  return c;
}

/** The package directories (node_modules/NAME or node_modules/@SCOPE/NAME, nested too) of bundled inputs. */
export function bundledPackageDirs(inputs: string[]): string[] {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const match = input.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//);
    if (match?.[1]) dirs.add(match[1]);
  }
  return [...dirs].sort();
}

export function sbom(timestamp: Date, binaries: Binary[]): object {
  const app = readPackage(root);
  const seen = new Map<string, Component>();
  // Each binary is its architecture's pinned Bun with its bundle inside.
  const files = binaries.map(({ file, sha256, runtime: runtimeDir, inputs }) => {
    const libraries = new Set<string>();
    for (const dir of bundledPackageDirs(inputs)) {
      const c = component(readPackage(join(root, dir)), 'library');
      seen.set(c['bom-ref'], c);
      libraries.add(c['bom-ref']);
    }
    const runtime = component(readPackage(runtimeDir), 'platform');
    seen.set(runtime['bom-ref'], runtime);
    const binary: Component = {
      type: 'file',
      'bom-ref': `file:${file}`,
      name: file,
      version: app.version,
      hashes: [{ alg: 'SHA-256', content: sha256 }],
    };
    seen.set(binary['bom-ref'], binary);
    return { ref: binary['bom-ref'], dependsOn: [runtime['bom-ref'], ...libraries].sort() };
  });
  const components = [...seen.values()].sort((a, b) => a['bom-ref'].localeCompare(b['bom-ref']));
  const main = component(app, 'application');
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: {
      timestamp: timestamp.toISOString(),
      tools: { components: [{ type: 'application', name: 'scripts/release.ts', version: app.version }] },
      component: main,
    },
    components,
    dependencies: [
      { ref: main['bom-ref'], dependsOn: files.map((f) => f.ref) },
      ...files,
      ...components.filter((c) => c.type !== 'file').map((c) => ({ ref: c['bom-ref'], dependsOn: [] })),
    ],
  };
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

if (import.meta.main) {
  const started = Date.now();
  const binaries = ARCHES.map((arch) => {
    const file = binaryName(arch);
    const metafile = join(root, 'build', 'release', `${file}.meta.json`);
    if (!process.argv.includes('--no-build')) buildWithBun(join(dist, file), { arch, metafile });
    const meta = JSON.parse(readFileSync(metafile, 'utf8')) as { inputs: Record<string, unknown> };
    return {
      file,
      sha256: sha256(join(dist, file)),
      runtime: bunRuntime(arch).packageDir,
      inputs: Object.keys(meta.inputs),
    };
  });
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const bom = sbom(epoch ? new Date(Number(epoch) * 1000) : new Date(), binaries);
  writeFileSync(join(dist, 'secret-fetch.cdx.json'), `${JSON.stringify(bom, null, 2)}\n`);
  const sums = [
    ...binaries.map((b) => `${b.sha256}  ${b.file}\n`),
    `${sha256(join(dist, 'secret-fetch.cdx.json'))}  secret-fetch.cdx.json\n`,
  ];
  writeFileSync(join(dist, 'SHA256SUMS'), sums.join(''));
  console.log(
    `release: ${binaries.map((b) => `dist/${b.file}`).join(', ')}, dist/secret-fetch.cdx.json, dist/SHA256SUMS in ${Date.now() - started} ms`,
  );
  process.stdout.write(readFileSync(join(dist, 'SHA256SUMS'), 'utf8'));
}
