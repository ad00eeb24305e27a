// Test support (not exported). vitest.config.ts lists `import` among `resolve.conditions`, and
// vitest hands every condition to its workers as `node --conditions=…`. Node then applies
// `import` to `require()` as well, so pg's CommonJS `require('pg-pool')` gets pg-pool's ES module
// namespace instead of its class, and loading pg fails ("Class extends value [object Module] is not
// a constructor"). Outside vitest (the built CLI, the server) nothing of this happens. This hook
// drops the `import` condition for `require()` calls, in test workers only.
import { registerHooks } from 'node:module';

if (process.execArgv.includes('import')) {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (context.conditions.includes('require') && context.conditions.includes('import')) {
        return nextResolve(specifier, {
          ...context,
          conditions: context.conditions.filter((c) => c !== 'import'),
        });
      }
      return nextResolve(specifier, context);
    },
  });
}
