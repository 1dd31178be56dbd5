// What goes into the executable's main script and what into its lazily loaded groups, shared by
// scripts/build.ts and the start-path tests (test/layering.test.ts), so the tests check the plan
// the build uses.

import { relative, resolve } from 'node:path';
import type { PluginBuild } from 'esbuild';
import { SUBCOMMANDS } from '../src/commands/index.ts';

// Libraries most runs never need go into separate scripts, one per group, each loaded on first
// use by scripts/sea-vendor-loader.js: the fast local path never parses or runs them.
// Secret Manager's client (google-gax, gRPC and protobuf definitions: about 1.3 MiB) is a group of
// its own, so a gs:// run does not deserialize it; it takes google-auth-library from the google
// group, so every client shares one copy of the credential classes.
export const VENDOR_GROUPS: Record<string, string[]> = {
  google: ['@google-cloud/storage', 'google-auth-library'],
  gax: ['@google-cloud/secret-manager/build/src/v1/secret_manager_service_client.js', 'google-gax/fallback'],
  yaml: ['yaml'],
  toml: ['smol-toml'],
};
export const groupOf = Object.fromEntries(
  Object.entries(VENDOR_GROUPS).flatMap(([group, ids]) => ids.map((id) => [id, group])),
);
export const VENDOR_PATTERN = /^(@google-cloud\/|google-auth-library$|google-gax(\/|$)|yaml$|smol-toml$)/;

// Our own code that only the operator subcommands run (push, edit, sign, doctor, ...) is one more
// group, so the entrypoint's script stays small. It must share the main script's module instances
// (error classes, Secret, the pipeline), so its imports of modules the main script holds become
// "@secret-fetch/core/<path>" requires, answered from globalThis.__sfCore, which the main script fills.
// The group of each command module comes from the command registry (src/commands/index.ts).
export const INTERNAL_GROUPS: Record<string, string[]> = {};
for (const entry of Object.values(SUBCOMMANDS)) {
  if (entry.group === 'main') continue;
  const files = INTERNAL_GROUPS[entry.group] ?? [];
  const file = `src/commands/${entry.module}`;
  if (!files.includes(file)) files.push(file);
  INTERNAL_GROUPS[entry.group] = files;
}
for (const [group, files] of Object.entries(INTERNAL_GROUPS)) {
  for (const file of files) groupOf[`@secret-fetch/${group}/${file}`] = group;
}
const internalOf = Object.fromEntries(
  Object.entries(INTERNAL_GROUPS).flatMap(([group, files]) => files.map((file) => [file, group])),
);

export const vendorExternal = {
  name: 'vendor-external',
  setup(b: PluginBuild) {
    b.onResolve({ filter: VENDOR_PATTERN }, (args) => {
      if (!(args.path in groupOf)) throw new Error(`${args.path}: add it to VENDOR_GROUPS in scripts/bundle-plan.ts`);
      return { path: args.path, external: true };
    });
  },
};
/** The main script reaches a subcommand module only through the loader. */
export const internalExternal = (root: string) => ({
  name: 'internal-external',
  setup(b: PluginBuild) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      const file = relative(root, resolve(args.resolveDir, args.path));
      const group = internalOf[file];
      return group === undefined ? undefined : { path: `@secret-fetch/${group}/${file}`, external: true };
    });
  },
});
