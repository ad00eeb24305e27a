import './test-node-conditions.ts';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ForgeError } from '@backupforge/common';
import { isForgeError } from '@backupforge/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBackend } from '../open-backend.ts';
import {
  createS3Backend,
  openS3Location,
  parseS3Location,
  parseS3Settings,
  resolveS3BackendOptions,
} from './index.ts';

function thrown(fn: () => unknown): ForgeError {
  try {
    fn();
  } catch (e) {
    if (!isForgeError(e)) expect.fail(`expected a ForgeError, got ${String(e)}`);
    return e;
  }
  return expect.fail('expected a throw, but the call returned');
}

async function rejected(promise: Promise<unknown>): Promise<ForgeError> {
  const error = await promise.then(
    () => expect.fail('expected a rejection, but the call resolved'),
    (e: unknown) => e,
  );
  if (!isForgeError(error)) expect.fail(`expected a ForgeError, got ${String(error)}`);
  return error;
}

describe('parseS3Location', () => {
  it.each([
    [
      'http://127.0.0.1:18080/bucket/prefix',
      {
        endpoint: 'http://127.0.0.1:18080',
        bucket: 'bucket',
        prefix: 'prefix',
        pathStyle: true,
        region: undefined,
        location: 's3:http://127.0.0.1:18080/bucket/prefix',
      },
    ],
    [
      'https://minio.example.com:9000/backups',
      {
        endpoint: 'https://minio.example.com:9000',
        bucket: 'backups',
        prefix: '',
        pathStyle: true,
        region: undefined,
        location: 's3:https://minio.example.com:9000/backups',
      },
    ],
    [
      'HTTPS://Minio.Example.com:443/backups/a/b/',
      {
        endpoint: 'https://minio.example.com',
        bucket: 'backups',
        prefix: 'a/b',
        pathStyle: true,
        region: undefined,
        location: 's3:https://minio.example.com/backups/a/b',
      },
    ],
    [
      'https://s3.eu-central-1.amazonaws.com/my-bucket/host1',
      {
        endpoint: 'https://s3.eu-central-1.amazonaws.com',
        bucket: 'my-bucket',
        prefix: 'host1',
        pathStyle: false,
        region: 'eu-central-1',
        location: 's3:https://s3.eu-central-1.amazonaws.com/my-bucket/host1',
      },
    ],
    [
      'https://s3.amazonaws.com/dotted.bucket.name',
      {
        endpoint: 'https://s3.amazonaws.com',
        bucket: 'dotted.bucket.name',
        prefix: '',
        pathStyle: true,
        region: undefined,
        location: 's3:https://s3.amazonaws.com/dotted.bucket.name',
      },
    ],
    [
      'http://[::1]:9000/b/p%20q',
      {
        endpoint: 'http://[::1]:9000',
        bucket: 'b',
        prefix: 'p q',
        pathStyle: true,
        region: undefined,
        location: 's3:http://[::1]:9000/b/p q',
      },
    ],
    [
      'my-bucket',
      {
        endpoint: undefined,
        bucket: 'my-bucket',
        prefix: '',
        pathStyle: false,
        region: undefined,
        location: 's3:my-bucket',
      },
    ],
    [
      'my-bucket/hosts/laptop/',
      {
        endpoint: undefined,
        bucket: 'my-bucket',
        prefix: 'hosts/laptop',
        pathStyle: false,
        region: undefined,
        location: 's3:my-bucket/hosts/laptop',
      },
    ],
  ])('parses %j', (rest, expected) => {
    const parsed = parseS3Location(rest);
    expect({ ...parsed }).toEqual(expected);
  });

  it("accepts restic's s3.amazonaws.com/bucket form with a deprecation warning", () => {
    const parsed = parseS3Location('s3.us-west-2.amazonaws.com/bucket/prefix');
    expect(parsed).toMatchObject({
      endpoint: 'https://s3.us-west-2.amazonaws.com',
      bucket: 'bucket',
      prefix: 'prefix',
      region: 'us-west-2',
      pathStyle: false,
    });
    expect(parsed.warning).toContain("'s3:https://s3.us-west-2.amazonaws.com/…'");
  });

  it.each([
    ['', 'needs a bucket'],
    ['https://host', 'names no bucket'],
    ['https://host/', 'names no bucket'],
    ['https:///bucket', 'no host'],
    ['ftp://host/bucket', "unsupported scheme 'ftp://'"],
    ['https://host/bucket?x=1', 'query string'],
    ['https://host/bucket#frag', 'query string'],
    ['https://host/bucket/a//b', "empty, '.' or '..' segment"],
    ['https://host/bucket/../other', "empty, '.' or '..' segment"],
    ['https://host/bucket/./x', "empty, '.' or '..' segment"],
    ['https://host/bucket/a%2Fb', "encodes a '/'"],
    ['https://host/bucket/%zz', 'percent-encoding'],
    ['https://host:99999/bucket', 'not a valid host'],
    ['https://host/bad$bucket', 'not a valid bucket name'],
    ['minio.local:9000/bucket', 'looks like a host and port'],
    ['Upper_Case', 'not a valid AWS S3 bucket name'],
    ['ab', 'not a valid AWS S3 bucket name'],
    [' bucket', 'white space'],
    ['bucket/a b', 'white space'],
  ])('rejects %j with FORGE_USAGE naming the accepted forms', (rest, fragment) => {
    const error = thrown(() => parseS3Location(rest));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain(fragment);
    expect(`${error.message} ${error.hint}`).toMatch(/s3:https:\/\/|s3:bucket/);
  });

  it.each([
    'https://AKIAEXAMPLE:wJalrXUtnFEMIsecret@s3.example.com/bucket',
    'http://user:wJalrXUtnFEMIsecret@127.0.0.1:9000/bucket',
    'AKIAEXAMPLE:wJalrXUtnFEMIsecret@bucket/prefix',
  ])('rejects credentials in the location without repeating them: %j', (rest) => {
    const error = thrown(() => parseS3Location(rest));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('credentials');
    expect(error.hint).toContain('AWS_SECRET_ACCESS_KEY');
    expect(JSON.stringify({ m: error.message, h: error.hint, d: error.details })).not.toContain(
      'wJalrXUtnFEMIsecret',
    );
  });
});

describe('parseS3Settings', () => {
  it('has defaults and ignores other backends’ keys', () => {
    expect(parseS3Settings({ 'sftp.connections': '2' })).toEqual({
      connections: 8,
      partSize: 16 * 1024 * 1024,
      listPageSize: 1000,
    });
    expect(parseS3Settings(undefined).connections).toBe(8);
  });

  it('parses every known key', () => {
    expect(
      parseS3Settings({
        's3.region': 'eu-west-1',
        's3.storage-class': 'STANDARD_IA',
        's3.path-style': 'false',
        's3.connections': '3',
        's3.part-size': '5',
        's3.list-page-size': '2',
      }),
    ).toEqual({
      region: 'eu-west-1',
      storageClass: 'STANDARD_IA',
      pathStyle: false,
      connections: 3,
      partSize: 5 * 1024 * 1024,
      listPageSize: 2,
    });
    expect(parseS3Settings({ 's3.path-style': 'TRUE' }).pathStyle).toBe(true);
  });

  it('rejects an unknown s3.* key, naming the known ones', () => {
    const error = thrown(() => parseS3Settings({ 's3.regoin': 'x' }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain("'s3.regoin'");
    for (const key of ['s3.region', 's3.storage-class', 's3.path-style', 's3.connections', 's3.part-size']) {
      expect(error.hint).toContain(key);
    }
  });

  it.each([
    ['s3.connections', '0'],
    ['s3.connections', '1.5'],
    ['s3.connections', 'many'],
    ['s3.part-size', '4'],
    ['s3.part-size', '5121'],
    ['s3.list-page-size', '1001'],
    ['s3.path-style', 'maybe'],
    ['s3.region', 'eu west'],
    ['s3.storage-class', 'A B'],
  ])('rejects %s=%j', (key, value) => {
    const error = thrown(() => parseS3Settings({ [key]: value }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain(key);
  });
});

describe('resolveS3BackendOptions', () => {
  const creds = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'supersecret' };

  it('takes the region from s3.region, then the AWS host, then AWS_REGION, then AWS_DEFAULT_REGION', () => {
    const env = { ...creds, AWS_REGION: 'ap-south-1', AWS_DEFAULT_REGION: 'sa-east-1' };
    expect(resolveS3BackendOptions('b1b', { env, settings: { 's3.region': 'eu-north-1' } }).region).toBe(
      'eu-north-1',
    );
    expect(resolveS3BackendOptions('https://s3.eu-west-3.amazonaws.com/b1b', { env }).region).toBe(
      'eu-west-3',
    );
    expect(resolveS3BackendOptions('b1b', { env }).region).toBe('ap-south-1');
    expect(
      resolveS3BackendOptions('b1b', { env: { ...creds, AWS_DEFAULT_REGION: 'sa-east-1' } }).region,
    ).toBe('sa-east-1');
    expect(resolveS3BackendOptions('b1b', { env: creds }).region).toBe('us-east-1');
  });

  it('reads static credentials from env, else leaves them to the default chain with AWS_PROFILE', () => {
    expect(
      resolveS3BackendOptions('http://h/b', {
        env: { ...creds, AWS_SESSION_TOKEN: 'tok', AWS_PROFILE: 'p' },
      }),
    ).toMatchObject({
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'supersecret', sessionToken: 'tok' },
    });
    const viaProfile = resolveS3BackendOptions('http://h/b', { env: { AWS_PROFILE: 'backup' } });
    expect(viaProfile.credentials).toBeUndefined();
    expect(viaProfile.profile).toBe('backup');
  });

  it('rejects a key id without a secret, without printing the key', () => {
    const error = thrown(() =>
      resolveS3BackendOptions('http://h/b', { env: { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE' } }),
    );
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('AWS_SECRET_ACCESS_KEY');
    expect(error.message).not.toContain('AKIDEXAMPLE');
  });

  it('applies settings and the path-style default of the location', () => {
    const options = resolveS3BackendOptions('http://127.0.0.1:9000/b/p', {
      env: creds,
      settings: {
        's3.connections': '2',
        's3.part-size': '8',
        's3.list-page-size': '5',
        's3.storage-class': 'ONEZONE_IA',
      },
    });
    expect(options).toMatchObject({
      endpoint: 'http://127.0.0.1:9000',
      bucket: 'b',
      prefix: 'p',
      pathStyle: true,
      connections: 2,
      partSize: 8 * 1024 * 1024,
      listPageSize: 5,
      storageClass: 'ONEZONE_IA',
      location: 's3:http://127.0.0.1:9000/b/p',
    });
    expect(
      resolveS3BackendOptions('http://127.0.0.1:9000/b', {
        env: creds,
        settings: { 's3.path-style': 'false' },
      }).pathStyle,
    ).toBe(false);
    expect(resolveS3BackendOptions('my-bucket', { env: creds }).pathStyle).toBe(false);
  });

  it('reports deprecated forms and archive storage classes through onWarning', () => {
    const warnings: string[] = [];
    resolveS3BackendOptions('s3.amazonaws.com/bucket', { env: creds, onWarning: (m) => warnings.push(m) });
    resolveS3BackendOptions('bucket', {
      env: creds,
      settings: { 's3.storage-class': 'DEEP_ARCHIVE' },
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('deprecated');
    expect(warnings[1]).toContain('data packs only');
  });
});

describe('openS3Location and createS3Backend without a server', () => {
  const env = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'supersecret' };

  it('is what openBackend dispatches s3: to, with the canonical location and properties', async () => {
    const backend = await openBackend('s3:http://127.0.0.1:1/bucket/prefix/', {
      env,
      settings: { 's3.connections': '3' },
    });
    expect(backend.location).toBe('s3:http://127.0.0.1:1/bucket/prefix');
    expect(backend.properties()).toEqual({ atomicReplace: true, connections: 3 });
    await backend.close();
  });

  it('rejects bad locations and settings through openBackend with FORGE_USAGE', async () => {
    expect((await rejected(openBackend('s3:', { env }))).code).toBe('FORGE_USAGE');
    expect((await rejected(openBackend('s3:bucket', { env, settings: { 's3.nope': '1' } }))).code).toBe(
      'FORGE_USAGE',
    );
  });

  it('maps a refused connection to a retryable FORGE_IO naming location, operation and key', async () => {
    const backend = await openS3Location('http://127.0.0.1:1/bucket/prefix', { env });
    const error = await rejected(backend.load({ type: 'index', name: 'ab'.repeat(32) }));
    expect(error.code).toBe('FORGE_IO');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('s3:http://127.0.0.1:1/bucket/prefix');
    expect(error.message).toContain(`load index/${'ab'.repeat(32)}`);
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.message).not.toContain('supersecret');
    await backend.close();
  });

  it('ignores AWS_CA_BUNDLE for http endpoints, and reports an unreadable one for https', async () => {
    const bundle = { ...env, AWS_CA_BUNDLE: '/nonexistent/forge-ca.pem' };
    const plain = await openS3Location('http://127.0.0.1:1/bucket', { env: bundle });
    // Gets as far as connecting: the bundle was not read.
    expect((await rejected(plain.stat({ type: 'config', name: 'config' }))).code).toBe('FORGE_IO');
    await plain.close();
    const tls = await openS3Location('https://127.0.0.1:1/bucket', { env: bundle });
    const error = await rejected(tls.stat({ type: 'config', name: 'config' }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('AWS_CA_BUNDLE=/nonexistent/forge-ca.pem');
    await tls.close();
  });

  it('rejects invalid options to createS3Backend', () => {
    expect(thrown(() => createS3Backend({ bucket: '' })).code).toBe('FORGE_USAGE');
    expect(thrown(() => createS3Backend({ bucket: 'b', partSize: 1024 })).code).toBe('FORGE_USAGE');
    expect(thrown(() => createS3Backend({ bucket: 'b', prefix: 'a/../b' })).code).toBe('FORGE_USAGE');
    expect(thrown(() => createS3Backend({ bucket: 'b', endpoint: 'http://u:p@h' })).code).toBe('FORGE_USAGE');
    expect(createS3Backend({ bucket: 'b', prefix: '/x/y/' }).location).toBe('s3:b/x/y');
  });

  it('rejects calls after close', async () => {
    const backend = createS3Backend({ bucket: 'b', endpoint: 'http://127.0.0.1:1' });
    await backend.close();
    expect((await rejected(backend.stat({ type: 'config', name: 'config' }))).code).toBe('FORGE_USAGE');
  });
});

describe('lazy loading', () => {
  it('importing @backupforge/storage and opening an s3: location does not load the AWS SDK; the first call does', () => {
    const src = new URL('../', import.meta.url).href;
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({
        resolve(specifier, context, next) {
          if (/^@(aws-sdk|smithy)\\//.test(specifier)) seen.push(specifier);
          return next(specifier, context);
        },
      });
      const storage = await import(new URL('index.ts', ${JSON.stringify(src)}));
      await import(new URL('s3/index.ts', ${JSON.stringify(src)}));
      const afterImport = [...seen];
      const backend = await storage.openBackend('s3:http://127.0.0.1:1/bucket', {
        env: { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' },
      });
      const afterOpen = [...seen];
      const error = await backend.stat({ type: 'config', name: 'config' }).catch((e) => e);
      await backend.close();
      console.log(JSON.stringify({ afterImport, afterOpen, afterUse: seen, code: error.code }));
    `;
    const result = spawnSync(
      process.execPath,
      ['--conditions=@backupforge/source', '--input-type=module', '--eval', script],
      { cwd: fileURLToPath(new URL('../../', import.meta.url)), encoding: 'utf8', timeout: 30_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    const out = JSON.parse(result.stdout.trim().split('\n').pop()!) as {
      afterImport: string[];
      afterOpen: string[];
      afterUse: string[];
      code: string;
    };
    expect(out.afterImport).toEqual([]);
    expect(out.afterOpen).toEqual([]);
    // The control: the hook does see the SDK once a call needs it.
    expect(out.afterUse).toContain('@aws-sdk/client-s3');
    expect(out.code).toBe('FORGE_IO');
  });
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

describe.skipIf(!hasOpenssl)('AWS_CA_BUNDLE with an https endpoint', () => {
  let dir: string;
  let server: ReturnType<typeof createServer>;
  let endpoint: string;
  const env = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'supersecret' };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-s3-tls-'));
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1']
        .concat(['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=127.0.0.1'])
        .concat(['-addext', 'subjectAltName=IP:127.0.0.1']),
      { encoding: 'utf8' },
    );
    expect(made.status, made.stderr).toBe(0);
    // A fake S3 that knows no objects.
    server = createServer(
      { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) },
      (req, res) => {
        req.resume();
        res.writeHead(404, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>nope</Message></Error>');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('trusts the CA of AWS_CA_BUNDLE, and explains an untrusted certificate without it', async () => {
    const handle = { type: 'key', name: 'ab'.repeat(32) } as const;
    const trusting = await openS3Location(`${endpoint}/bucket`, {
      env: { ...env, AWS_CA_BUNDLE: join(dir, 'cert.pem') },
    });
    expect((await rejected(trusting.load(handle))).code).toBe('FORGE_NOT_FOUND');
    await trusting.close();

    const plain = await openS3Location(`${endpoint}/bucket`, { env });
    const error = await rejected(plain.load(handle));
    expect(error.code).toBe('FORGE_IO');
    expect(error.retryable).toBe(false);
    expect(error.hint).toContain('AWS_CA_BUNDLE');
    await plain.close();
  });
});
