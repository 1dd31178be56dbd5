import { describe, expect, it } from 'vitest';
import { memberOf, UNKNOWN_MEMBER } from '../../../src/commands/doctor/credentials.ts';
import { bucketGrant, kmsKeyGrant, secretGrant, shellWord } from '../../../src/commands/doctor/grants.ts';

const SA = 'serviceAccount:web@demo.iam.gserviceaccount.com';

describe('bucketGrant', () => {
  it('grants objectViewer on the bucket to the member, as gcloud storage takes it', () => {
    expect(bucketGrant('vault', SA)).toBe(
      'gcloud storage buckets add-iam-policy-binding gs://vault --member=serviceAccount:web@demo.iam.gserviceaccount.com --role=roles/storage.objectViewer',
    );
  });

  it('keeps a bucket name with dots and underscores as one unquoted word', () => {
    expect(bucketGrant('my_vault.example.com', SA)).toContain(' gs://my_vault.example.com ');
  });
});

describe('kmsKeyGrant', () => {
  it('splits the key name into KEY, --location, --keyring and --project', () => {
    expect(kmsKeyGrant('projects/demo/locations/europe-west1/keyRings/apps/cryptoKeys/web', SA)).toBe(
      'gcloud kms keys add-iam-policy-binding web --location=europe-west1 --keyring=apps --project=demo --member=serviceAccount:web@demo.iam.gserviceaccount.com --role=roles/cloudkms.cryptoKeyDecrypter',
    );
  });

  it('quotes a key part a shell would split or expand', () => {
    expect(kmsKeyGrant("projects/demo/locations/global/keyRings/it's/cryptoKeys/a b", SA)).toBe(
      `gcloud kms keys add-iam-policy-binding 'a b' --location=global '--keyring=it'\\''s' --project=demo --member=${SA} --role=roles/cloudkms.cryptoKeyDecrypter`,
    );
  });

  it('passes a name it cannot split to gcloud whole (gcloud takes full resource names)', () => {
    expect(kmsKeyGrant('projects/demo/keyRings/apps', SA)).toBe(
      `gcloud kms keys add-iam-policy-binding projects/demo/keyRings/apps --member=${SA} --role=roles/cloudkms.cryptoKeyDecrypter`,
    );
  });
});

describe('secretGrant', () => {
  it('grants the accessor role on the one secret, with its project', () => {
    expect(secretGrant('demo', 'db-password', SA)).toBe(
      `gcloud secrets add-iam-policy-binding db-password --project=demo --member=${SA} --role=roles/secretmanager.secretAccessor`,
    );
  });

  it('says what to put in place of an unknown identity', () => {
    expect(secretGrant('demo', 'db-password', UNKNOWN_MEMBER)).toMatch(
      / --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles\/secretmanager.secretAccessor {2}# replace SERVICE_ACCOUNT_EMAIL /,
    );
  });
});

describe('members', () => {
  it('names service accounts serviceAccount: and anyone else user:', () => {
    expect(memberOf('web@demo.iam.gserviceaccount.com')).toBe(SA);
    expect(memberOf('123-compute@developer.gserviceaccount.com')).toBe(
      'serviceAccount:123-compute@developer.gserviceaccount.com',
    );
    expect(memberOf('ada@example.com')).toBe('user:ada@example.com');
  });

  it('ends a grant for an unknown member with a comment saying what to replace, still pasteable', () => {
    const grant = bucketGrant('vault', UNKNOWN_MEMBER);
    expect(grant).toMatch(
      /^gcloud storage buckets add-iam-policy-binding gs:\/\/vault --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles\/storage\.objectViewer {2}# replace SERVICE_ACCOUNT_EMAIL with the identity secret-fetch runs as$/,
    );
    expect(bucketGrant('vault', SA)).not.toContain('#');
  });
});

describe('shellWord', () => {
  it.each([
    ['gs://vault', 'gs://vault'],
    ['--member=user:a@b.c', '--member=user:a@b.c'],
    ['a b', "'a b'"],
    ['$(id)', "'$(id)'"],
    ["it's", `'it'\\''s'`],
    ['', "''"],
    ['x;rm', "'x;rm'"],
  ])('%s -> %s', (word, quoted) => {
    expect(shellWord(word)).toBe(quoted);
  });
});
