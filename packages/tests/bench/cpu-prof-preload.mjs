// Preload (`node --cpu-prof --cpu-prof-dir=DIR --import ./cpu-prof-preload.mjs …`) that makes the
// engine's pool workers write their --cpu-prof profiles too. Workers normally inherit the
// process's --cpu-prof flags, but the engine's blob-processor pool passes its own `execArgv: []`
// (packages/engine/src/internal/worker-pool.ts), so its workers run unprofiled. This wraps
// worker_threads.Worker (before the CLI is loaded) to append the --cpu-prof* flags to any
// explicit execArgv. Used only by the benchmarks; the product is not changed.
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const flags = process.execArgv.filter((a) => a.startsWith('--cpu-prof'));
  const wt = createRequire(import.meta.url)('node:worker_threads');
  const Original = wt.Worker;
  class ProfiledWorker extends Original {
    constructor(url, options) {
      if (options && Array.isArray(options.execArgv)) {
        const extra = flags.filter((f) => !options.execArgv.includes(f));
        options = { ...options, execArgv: [...options.execArgv, ...extra] };
      }
      super(url, options);
    }
  }
  wt.Worker = ProfiledWorker;
  syncBuiltinESMExports();
}
