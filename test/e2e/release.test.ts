// scripts/release.ts: the CycloneDX SBOM lists exactly the npm packages the last build bundled
// (build/meta.json, written by npm run build, which npm test runs first), each as its package.json says,
// and each binary with the Bun runtime it is made of. test/package/arm64.test.ts checks a real release.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bunRuntime, lockedPackage, unpackPinned } from '../../scripts/build-bun.ts';
import { bundledPackageDirs, npmPurl, sbom } from '../../scripts/release.ts';
import { ROOT } from '../integration/harness.ts';

interface Component {
  type: string;
  name: string;
  group?: string;
  version: string;
  purl?: string;
  'bom-ref': string;
  licenses?: unknown[];
  hashes?: { alg: string; content: string }[];
}

describe('release SBOM', () => {
  const meta = JSON.parse(readFileSync(join(ROOT, 'build', 'meta.json'), 'utf8'));
  const sha256 = 'ab'.repeat(32);
  const runtimeDir = bunRuntime('x64').packageDir;
  const inputs = Object.keys(meta.inputs);
  const bom = sbom(new Date(0), [{ file: 'secret-fetch-linux-x64', sha256, runtime: runtimeDir, inputs }]) as {
    bomFormat: string;
    specVersion: string;
    serialNumber: string;
    metadata: { timestamp: string; component: Component };
    components: Component[];
    dependencies: { ref: string; dependsOn: string[] }[];
  };

  it('encodes npm scopes in purls as the purl spec says', () => {
    expect(npmPurl('@google-cloud/kms', '6.3.0')).toBe('pkg:npm/%40google-cloud/kms@6.3.0');
    expect(npmPurl('yaml', '2.9.1')).toBe('pkg:npm/yaml@2.9.1');
  });

  it('finds package directories, scoped and nested, from bundled input paths', () => {
    expect(
      bundledPackageDirs([
        'src/main.ts',
        'node_modules/yaml/dist/index.js',
        'node_modules/@google-cloud/kms/build/src/index.js',
        'node_modules/google-gax/node_modules/gaxios/build/index.js',
      ]),
    ).toEqual(['node_modules/@google-cloud/kms', 'node_modules/google-gax/node_modules/gaxios', 'node_modules/yaml']);
  });

  it('is CycloneDX 1.5 with the application, every bundled package, the Bun runtime and the binary', () => {
    expect(bom).toMatchObject({
      bomFormat: 'CycloneDX',
      specVersion: '1.5',
      metadata: { timestamp: '1970-01-01T00:00:00.000Z' },
    });
    expect(bom.serialNumber).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    const app = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(bom.metadata.component).toMatchObject({ type: 'application', name: 'secret-fetch', version: app.version });

    const expected = new Set<string>();
    for (const dir of bundledPackageDirs(inputs)) {
      const pkg = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8'));
      expected.add(npmPurl(pkg.name, pkg.version));
    }
    const libraries = [...expected].sort();
    const runtime = npmPurl('@oven/bun-linux-x64', app.devDependencies.bun);
    expected.add(runtime);
    expect(bom.components.find((c) => c.purl === runtime)).toEqual({
      type: 'platform',
      'bom-ref': runtime,
      group: '@oven',
      name: 'bun-linux-x64',
      version: app.devDependencies.bun,
      purl: runtime,
      licenses: [{ license: { id: 'MIT' } }],
    });
    const packages = bom.components.filter((c) => c.type !== 'file');
    expect(new Set(packages.map((c) => c.purl))).toEqual(expected);
    expect(bom.components.filter((c) => c.type === 'file')).toEqual([
      {
        type: 'file',
        'bom-ref': 'file:secret-fetch-linux-x64',
        name: 'secret-fetch-linux-x64',
        version: app.version,
        hashes: [{ alg: 'SHA-256', content: sha256 }],
      },
    ]);
    for (const dep of Object.keys(app.dependencies)) {
      expect(
        bom.components.some((c) => c.purl === npmPurl(dep, app.dependencies[dep])),
        dep,
      ).toBe(true);
    }
    for (const c of packages) {
      expect(c['bom-ref']).toBe(c.purl);
      expect(c.licenses, c.purl).toBeDefined();
      expect(c.group ? `${c.group}/${c.name}` : c.name).toBe(
        decodeURIComponent((c.purl as string).slice(8).replace(/@[^@]*$/, '')),
      );
    }
    // The application is its binaries; each binary is its runtime and the bundled packages.
    expect(bom.dependencies.slice(0, 2)).toEqual([
      { ref: bom.metadata.component['bom-ref'], dependsOn: ['file:secret-fetch-linux-x64'] },
      { ref: 'file:secret-fetch-linux-x64', dependsOn: [runtime, ...libraries].sort() },
    ]);
    expect(bom.dependencies.slice(2)).toEqual(packages.map((c) => ({ ref: c['bom-ref'], dependsOn: [] })));
  });
});

describe("another architecture's Bun runtime", () => {
  it("is pinned by package-lock.json as bun's optional dependency, of the same version", () => {
    const app = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(lockedPackage('@oven/bun-linux-aarch64')).toMatchObject({
      version: app.devDependencies.bun,
      integrity: expect.stringMatching(/^sha512-/),
    });
  });

  it("is unpacked only when npm's tarball has the integrity the lockfile pins", () => {
    const work = mkdtempSync('/tmp/secret-fetch-runtime-');
    try {
      // A small package npm ci has cached stands in for the 50 MB runtime.
      const yaml = lockedPackage('yaml');
      unpackPinned('yaml', yaml, join(work, 'good'));
      expect(JSON.parse(readFileSync(join(work, 'good', 'package', 'package.json'), 'utf8')).version).toBe(
        yaml.version,
      );
      expect(readFileSync(join(work, 'good', 'integrity'), 'utf8')).toBe(yaml.integrity);
      const forged = { ...yaml, integrity: `sha512-${Buffer.alloc(64).toString('base64')}` };
      expect(() => unpackPinned('yaml', forged, join(work, 'bad'))).toThrow(
        `npm pack yaml@${yaml.version} is not what package-lock.json pins: ${yaml.integrity}`,
      );
      expect(existsSync(join(work, 'bad'))).toBe(false);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});
