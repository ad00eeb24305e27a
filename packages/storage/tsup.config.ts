import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/local/index.ts', 'src/memory/index.ts', 'src/testing/index.ts'],
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: true,
  // The conformance suite (./testing) runs inside the consumer's vitest: never bundle it.
  external: ['vitest'],
});
