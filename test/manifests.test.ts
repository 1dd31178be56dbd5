// Every Kubernetes and Cloud Run manifest in docker/ is validated against the API's own schemas: the
// Kubernetes OpenAPI definitions (kubernetes-models) and the Knative Serving CRD schemas
// (@kubernetes-models/knative), both compiled to Ajv validators by @kubernetes-models/validate.
// Then the few properties secret-fetch relies on are checked by hand (tmpfs volumes, the paths).

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './integration/harness.ts';

interface Validating {
  validate(): void;
}
type Model = new (data: Record<string, unknown>) => Validating;

const MODELS: Record<string, Model> = {
  'apps/v1 Deployment': Deployment as unknown as Model,
  'v1 ServiceAccount': ServiceAccount as unknown as Model,
  'serving.knative.dev/v1 Service': KnativeService as unknown as Model,
};

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, walked by the paths the manifests use
type Doc = Record<string, any>;

function manifests(): { file: string; doc: Doc }[] {
  const out: { file: string; doc: Doc }[] = [];
  for (const dir of ['docker/k8s', 'docker/cloudrun']) {
    for (const name of readdirSync(join(ROOT, dir)).sort()) {
      if (!/\.ya?ml$/.test(name)) continue;
      const path = join(ROOT, dir, name);
      for (const parsed of parseAllDocuments(readFileSync(path, 'utf8'))) {
        expect(parsed.errors, `${name}: ${parsed.errors.join('; ')}`).toEqual([]);
        const doc = parsed.toJS() as Doc | null;
        if (doc !== null) out.push({ file: relative(ROOT, path), doc });
      }
    }
  }
  return out;
}

/** Validates against the schema for the document's apiVersion and kind; throws with Ajv's errors. */
function validate(doc: Doc): void {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!Model) throw new Error(`no schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(structuredClone(doc)).validate();
}

const all = manifests();
const podSpecs = () =>
  all
    .filter(({ doc }) => doc.kind === 'Deployment' || doc.kind === 'Service')
    .map(({ file, doc }) => ({ file, spec: doc.spec.template.spec as Doc }));

describe('manifests in docker/', () => {
  it('finds the manifests the README names', () => {
    expect(new Set(all.map(({ file }) => file))).toEqual(
      new Set([
        'docker/cloudrun/service-sidecar.yaml',
        'docker/cloudrun/service.yaml',
        'docker/k8s/deployment-init.yaml',
        'docker/k8s/deployment-sidecar.yaml',
        'docker/k8s/deployment-wrapper.yaml',
        'docker/k8s/serviceaccount.yaml',
      ]),
    );
  });

  it.each(all.map(({ file, doc }) => [`${file}: ${doc.kind} ${doc.metadata?.name}`, doc]))(
    'validates against its API schema: %s',
    (_, doc) => {
      expect(() => validate(doc as Doc)).not.toThrow();
    },
  );

  it('the validator rejects what the API server would (wrong types, missing required fields, bad enums)', () => {
    const deployment = all.find(({ doc }) => doc.kind === 'Deployment')?.doc as Doc;
    const service = all.find(({ doc }) => doc.kind === 'Service')?.doc as Doc;
    const broken = (doc: Doc, mutate: (copy: Doc) => void) => {
      const copy = structuredClone(doc);
      mutate(copy);
      return () => validate(copy);
    };
    expect(
      broken(deployment, (d) => {
        d.spec.template.spec.containers[0].ports[0].containerPort = '8080';
      }),
    ).toThrow(/containerPort must be integer/);
    expect(
      broken(deployment, (d) => {
        delete d.spec.selector;
      }),
    ).toThrow(/spec must have required property selector/);
    expect(
      broken(deployment, (d) => {
        d.spec.template.spec.volumes[0].emptyDir.sizeLimit = { mebibytes: 1 };
      }),
    ).toThrow(/sizeLimit/);
    expect(
      broken(service, (d) => {
        d.spec.template.spec.containers[0].env = { SECRET_FETCH_SOURCE: 'gs://b/o' };
      }),
    ).toThrow(/env must be array/);
    expect(
      broken(service, (d) => {
        d.apiVersion = 'serving.knative.dev/v2';
      }),
    ).toThrow(/no schema|apiVersion/);
  });

  it('mounts an in-memory emptyDir (tmpfs) wherever a secret is written, and nowhere on disk', () => {
    for (const { file, spec } of podSpecs()) {
      const volumes = new Map<string, Doc>((spec.volumes as Doc[]).map((v) => [v.name, v]));
      for (const container of [...(spec.initContainers ?? []), ...spec.containers] as Doc[]) {
        for (const mount of (container.volumeMounts ?? []) as Doc[]) {
          expect(volumes.get(mount.name)?.emptyDir, `${file}: ${container.name} ${mount.mountPath}`).toMatchObject({
            medium: 'Memory',
          });
        }
      }
      const secrets = volumes.get('secrets');
      expect(secrets, file).toBeDefined();
    }
  });

  it('runs as the non-root app user of docker/example and with the Workload Identity service account', () => {
    const dockerfile = readFileSync(join(ROOT, 'docker/example/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^USER 10001:10001$/m);
    const sa = all.find(({ doc }) => doc.kind === 'ServiceAccount')?.doc as Doc;
    expect(sa.metadata.annotations['iam.gke.io/gcp-service-account']).toMatch(/@.*\.iam\.gserviceaccount\.com$/);
    for (const { file, doc } of all.filter(({ doc }) => doc.kind === 'Deployment')) {
      const spec = doc.spec.template.spec as Doc;
      expect(spec.serviceAccountName, file).toBe(sa.metadata.name);
      expect(spec.securityContext, file).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001 });
    }
  });

  it('the init container writes the path the app container reads, and exits (no command after --)', () => {
    const init = all.find(({ file }) => file === 'docker/k8s/deployment-init.yaml')?.doc as Doc;
    const spec = init.spec.template.spec as Doc;
    const fetcher = (spec.initContainers as Doc[])[0] as Doc;
    expect(fetcher.restartPolicy).toBeUndefined();
    expect(fetcher.args).not.toContain('--');
    const out = fetcher.args[fetcher.args.indexOf('--out') + 1] as string;
    const app = spec.containers[0] as Doc;
    const mount = (app.volumeMounts as Doc[]).find((m) => m.name === 'secrets');
    expect(out.startsWith(`${mount?.mountPath}/`)).toBe(true);
    expect(mount?.readOnly).toBe(true);
  });

  /** The value after `flag` in `args`. */
  const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1] as string;

  it('the native sidecar refreshes without a command, and its startupProbe runs secret-fetch probe', () => {
    const sidecar = all.find(({ file }) => file === 'docker/k8s/deployment-sidecar.yaml')?.doc as Doc;
    const spec = sidecar.spec.template.spec as Doc;
    const fetcher = (spec.initContainers as Doc[])[0] as Doc;
    expect(fetcher.restartPolicy).toBe('Always');
    expect(fetcher.args).not.toContain('--');
    expect(argAfter(fetcher.args, '--refresh')).toMatch(/^\d+(ms|s|m|h)$/);
    const ready = argAfter(fetcher.args, '--ready-file');
    expect(fetcher.startupProbe.exec.command).toEqual(['/secret-fetch', 'probe', '--ready-file', ready]);
    const mounts = (fetcher.volumeMounts as Doc[]).filter((m) => m.name === 'secrets');
    const out = argAfter(fetcher.args, '--out');
    for (const path of [out, ready]) expect(path.startsWith(`${mounts[0]?.mountPath}/`), path).toBe(true);
    const app = (spec.containers as Doc[])[0] as Doc;
    expect((app.volumeMounts as Doc[]).find((m) => m.name === 'secrets')).toMatchObject({ readOnly: true });
    // The validator knows the field: a bad restartPolicy value type is refused.
    const copy = structuredClone(sidecar);
    copy.spec.template.spec.initContainers[0].restartPolicy = 1;
    expect(() => validate(copy)).toThrow(/restartPolicy/);
  });

  it('the Cloud Run sidecar starts before the app (container dependencies) and the app waits on the probe', () => {
    const service = all.find(({ file }) => file === 'docker/cloudrun/service-sidecar.yaml')?.doc as Doc;
    const containers = service.spec.template.spec.containers as Doc[];
    const app = containers.find((c) => c.ports !== undefined) as Doc;
    const fetcher = containers.find((c) => c.name === 'secret-fetch') as Doc;
    expect(containers.filter((c) => c.ports !== undefined)).toHaveLength(1); // one ingress container
    const dependencies = JSON.parse(
      service.spec.template.metadata.annotations['run.googleapis.com/container-dependencies'],
    );
    expect(dependencies).toEqual({ [app.name]: [fetcher.name] });
    expect(fetcher.args).not.toContain('--');
    const ready = argAfter(fetcher.args, '--ready-file');
    expect(app.args.join(' ')).toContain(`secret-fetch probe --ready-file ${ready}`);
    expect(argAfter(fetcher.args, '--refresh')).toMatch(/^\d+(ms|s|m|h)$/);
  });
});
