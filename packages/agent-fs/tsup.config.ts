import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/whole-file-writer.ts', 'src/walk-worker.ts'],
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: true,
});
