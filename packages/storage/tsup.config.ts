import { defineConfig } from 'tsup';

export default defineConfig({
  entry: [
    'src/index.ts',
    'src/local/index.ts',
    'src/memory/index.ts',
    'src/testing/index.ts',
    'src/s3/index.ts',
    'src/sftp/index.ts',
    'src/rclone/index.ts',
    'src/rest/index.ts',
    'src/decorators/index.ts',
  ],
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: true,
  // The conformance suite (./testing) runs inside the consumer's vitest: never bundle it.
  external: ['vitest', '@aws-sdk/client-s3', 'ssh2'],
});
