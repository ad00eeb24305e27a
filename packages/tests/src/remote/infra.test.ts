// The backend and store suites skip when their servers are missing (a developer machine without
// root). CI must never skip them silently: there, a missing server fails this test.
import { describe, expect, it } from 'vitest';

const REQUIRED = [
  'FORGE_TEST_S3_ENDPOINT',
  'FORGE_TEST_SFTP_HOST',
  'FORGE_TEST_SFTP_KEY',
  'FORGE_TEST_PG_URL',
  'FORGE_TEST_RCLONE',
] as const;

describe('loopback test servers', () => {
  it.runIf(process.env.CI === 'true')('are all started under CI (.ci/infra.sh up)', () => {
    const missing = REQUIRED.filter((k) => !process.env[k]);
    expect(missing, 'servers the test runner did not start').toEqual([]);
  });
});
