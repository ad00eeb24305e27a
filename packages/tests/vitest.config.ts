import { defineConfig } from 'vitest/config';

const conditions = ['@backupforge/source', 'node', 'import', 'module', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    restoreMocks: true,
    hookTimeout: 120_000,
    include: ['src/**/*.test.ts'],
    // Tests here spawn processes, mount filesystems and write GiB-sized files: keep them from starving each other on 2 cores.
    maxWorkers: 2,
    testTimeout: 300_000,
  },
});
