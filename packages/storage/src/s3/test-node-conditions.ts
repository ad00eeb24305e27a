import { registerHooks } from 'node:module';

/**
 * Test-only shim, imported by the S3 test files before the SDK loads.
 *
 * Vitest forwards `ssr.resolve.conditions` of vitest.config.ts (which lists `import` and `module`)
 * to its workers as `--conditions`, and Node then applies them to `require()` too. The AWS SDK's
 * CommonJS build require()s sibling packages (`@aws-sdk/checksums/…`) whose exports map lists
 * `module` first, so they resolve to their `dist-es` builds, which are not valid Node ESM
 * (extensionless imports) and fail to load. Plain Node (the CLI, the built package) never has
 * these conditions. This drops them again for require() calls made from inside node_modules, which
 * is how Node resolves there without the flags.
 */
const STRAY = new Set(['import', 'module']);

if (process.execArgv.some((arg, i) => process.execArgv[i - 1] === '--conditions' && STRAY.has(arg))) {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (
        context.conditions.includes('require') &&
        context.parentURL?.includes('/node_modules/') &&
        context.conditions.some((c) => STRAY.has(c))
      ) {
        return nextResolve(specifier, {
          ...context,
          conditions: context.conditions.filter((c) => !STRAY.has(c)),
        });
      }
      return nextResolve(specifier, context);
    },
  });
}
