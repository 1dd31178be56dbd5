// The gcloud commands that grant what a run needs, with the real names filled in, each argument
// quoted for a POSIX shell only when it has to be. Pure.

/** The role that holds storage.objects.get (and nothing that writes). */
export const OBJECT_VIEWER = 'roles/storage.objectViewer';
/** The role that holds cloudkms.cryptoKeyVersions.useToDecrypt (and not encrypt). */
export const KEY_DECRYPTER = 'roles/cloudkms.cryptoKeyDecrypter';
/** The role that holds secretmanager.versions.access (and nothing else). */
export const SECRET_ACCESSOR = 'roles/secretmanager.secretAccessor';

/** `gcloud storage buckets add-iam-policy-binding gs://BUCKET --member=M --role=roles/storage.objectViewer`. */
export function bucketGrant(bucket: string, member: string): string {
  return command(['gcloud', 'storage', 'buckets', 'add-iam-policy-binding', `gs://${bucket}`], member, OBJECT_VIEWER);
}

/** `gcloud kms keys add-iam-policy-binding KEY --location=L --keyring=R --project=P --member=M --role=...`. */
export function kmsKeyGrant(keyName: string, member: string): string {
  const match = /^projects\/([^/]+)\/locations\/([^/]+)\/keyRings\/([^/]+)\/cryptoKeys\/([^/]+)$/.exec(keyName);
  // A name options.ts did not validate: gcloud also takes the full resource name as KEY.
  if (!match) return command(['gcloud', 'kms', 'keys', 'add-iam-policy-binding', keyName], member, KEY_DECRYPTER);
  const [, project = '', location = '', keyRing = '', key = ''] = match;
  return command(
    [
      'gcloud',
      'kms',
      'keys',
      'add-iam-policy-binding',
      key,
      `--location=${location}`,
      `--keyring=${keyRing}`,
      `--project=${project}`,
    ],
    member,
    KEY_DECRYPTER,
  );
}

/** `gcloud secrets add-iam-policy-binding SECRET --project=P --member=M --role=roles/secretmanager.secretAccessor`. */
export function secretGrant(project: string, secret: string, member: string): string {
  return command(
    ['gcloud', 'secrets', 'add-iam-policy-binding', secret, `--project=${project}`],
    member,
    SECRET_ACCESSOR,
  );
}

/** Placeholders used when the identity is not known; grants then say what to put there. */
export const PLACEHOLDERS = {
  serviceAccount: 'SERVICE_ACCOUNT_EMAIL',
  user: 'USER_EMAIL',
  principal: 'PRINCIPAL',
} as const;

function command(words: readonly string[], member: string, role: string): string {
  const line = [...words, `--member=${member}`, `--role=${role}`].map(shellWord).join(' ');
  const placeholder = Object.values(PLACEHOLDERS).find((p) => member.includes(p));
  // A shell comment, so the line can still be pasted as it is once the placeholder is replaced.
  return placeholder === undefined ? line : `${line}  # replace ${placeholder} with the identity secret-fetch runs as`;
}

/** One word for a POSIX shell: as is when it holds only safe characters, else single-quoted. */
export function shellWord(word: string): string {
  if (word !== '' && /^[A-Za-z0-9@%+=:,./_-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
