// The workspace dependency graph: which package may depend on (and import) which.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.ts';

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

interface WorkspacePackage {
  readonly dir: string;
  readonly manifest: Manifest;
}

/** Allowed `@backupforge/*` edges. `'*'` allows any workspace package. */
const ALLOWED: Record<string, { runtime: readonly string[] | '*'; devOnly?: readonly string[] }> = {
  '@backupforge/common': { runtime: [] },
  '@backupforge/engine': { runtime: ['@backupforge/common'], devOnly: ['@backupforge/storage'] },
  '@backupforge/storage': { runtime: ['@backupforge/common'] },
  '@backupforge/store': { runtime: ['@backupforge/common'] },
  '@backupforge/agent-fs': { runtime: ['@backupforge/common'] },
  // The operating layer (config-file jobs, runs, scheduler, hooks, notifications): above the
  // agents, below the apps, shared by the CLI and the server.
  '@backupforge/jobs': {
    runtime: [
      '@backupforge/common',
      '@backupforge/engine',
      '@backupforge/storage',
      '@backupforge/store',
      '@backupforge/agent-fs',
    ],
  },
  '@backupforge/forge': {
    runtime: [
      '@backupforge/common',
      '@backupforge/engine',
      '@backupforge/storage',
      '@backupforge/store',
      '@backupforge/agent-fs',
      '@backupforge/jobs',
    ],
  },
  '@backupforge/tests': { runtime: '*' },
};

function workspacePackages(): WorkspacePackage[] {
  const out: WorkspacePackage[] = [];
  for (const group of ['packages', 'apps']) {
    const base = join(REPO_ROOT, group);
    for (const name of readdirSync(base).sort()) {
      const file = join(base, name, 'package.json');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      out.push({ dir: join(base, name), manifest: JSON.parse(text) as Manifest });
    }
  }
  return out;
}

function allowed(from: string, to: string, dev: boolean): boolean {
  const rule = ALLOWED[from];
  if (!rule) return false;
  if (rule.runtime === '*' || rule.runtime.includes(to)) return true;
  return dev && (rule.devOnly ?? []).includes(to);
}

const SKIP_DIRS = new Set(['node_modules', 'dist', '.turbo', 'fixtures', 'coverage']);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (SKIP_DIRS.has(name)) continue;
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(c|m)?tsx?$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
    }
  };
  walk(dir);
  return out;
}

const isTestFile = (file: string) => /\.(test|spec)\.[cm]?tsx?$/.test(file);

/** `@backupforge/...` specifiers in static imports, re-exports, dynamic imports and requires. */
export function backupforgeSpecifiers(code: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"](@backupforge\/[^'"]+)['"]/g,
    /\bimport\s*['"](@backupforge\/[^'"]+)['"]/g,
    /\bimport\s*\(\s*['"`](@backupforge\/[^'"`]+)['"`]/g,
    /\brequire\s*\(\s*['"](@backupforge\/[^'"]+)['"]/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) found.push(m[1]!);
  return found;
}

/** Package name of a specifier: `@backupforge/storage/memory` → `@backupforge/storage`. */
const packageOf = (spec: string) => spec.split('/').slice(0, 2).join('/');

describe('workspace dependency graph', () => {
  const pkgs = workspacePackages();
  const names = pkgs.map((p) => p.manifest.name);

  it('knows every workspace package (a new package needs a row in the allowed-edges table)', () => {
    expect(names.length).toBeGreaterThanOrEqual(6);
    expect(names.filter((n) => !(n in ALLOWED))).toEqual([]);
    for (const n of Object.keys(ALLOWED)) expect(names).toContain(n);
  });

  it('package.json dependencies follow the allowed edges', () => {
    const violations: string[] = [];
    for (const { manifest: m } of pkgs) {
      const sections: [string, Record<string, string> | undefined, boolean][] = [
        ['dependencies', m.dependencies, false],
        ['peerDependencies', m.peerDependencies, false],
        ['devDependencies', m.devDependencies, true],
      ];
      for (const [section, deps, dev] of sections) {
        for (const dep of Object.keys(deps ?? {})) {
          if (!dep.startsWith('@backupforge/')) continue;
          if (dep === m.name) violations.push(`${m.name} depends on itself (${section})`);
          else if (!allowed(m.name, dep, dev)) violations.push(`${m.name} → ${dep} (${section})`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('@backupforge/common has no runtime dependencies at all', () => {
    const common = pkgs.find((p) => p.manifest.name === '@backupforge/common');
    expect(common).toBeDefined();
    expect(Object.keys(common!.manifest.dependencies ?? {})).toEqual([]);
    expect(Object.keys(common!.manifest.peerDependencies ?? {})).toEqual([]);
  });

  it('source imports follow the allowed edges and are declared in package.json', () => {
    const violations: string[] = [];
    let scanned = 0;
    for (const { dir, manifest: m } of pkgs) {
      const declared = new Set([
        ...Object.keys(m.dependencies ?? {}),
        ...Object.keys(m.peerDependencies ?? {}),
        ...Object.keys(m.devDependencies ?? {}),
      ]);
      const runtimeDeclared = new Set([
        ...Object.keys(m.dependencies ?? {}),
        ...Object.keys(m.peerDependencies ?? {}),
      ]);
      for (const file of sourceFiles(join(dir, 'src'))) {
        const test = isTestFile(file);
        scanned++;
        for (const spec of backupforgeSpecifiers(readFileSync(file, 'utf8'))) {
          const to = packageOf(spec);
          const where = `${relative(REPO_ROOT, file)}: ${spec}`;
          if (to === m.name) {
            violations.push(`${where} (imports its own package by name)`);
            continue;
          }
          if (!allowed(m.name, to, test)) violations.push(`${where} (edge ${m.name} → ${to} not allowed)`);
          else if (!(test ? declared : runtimeDeclared).has(to))
            violations.push(
              `${where} (not in ${test ? 'any dependency section' : 'dependencies'} of package.json)`,
            );
        }
      }
    }
    expect(scanned).toBeGreaterThan(20);
    expect(violations).toEqual([]);
  });

  it("no source file imports another package's internals (@backupforge/x/src/…, /dist/…)", () => {
    const violations: string[] = [];
    for (const { dir } of pkgs) {
      for (const file of sourceFiles(join(dir, 'src'))) {
        for (const spec of backupforgeSpecifiers(readFileSync(file, 'utf8'))) {
          if (/^@backupforge\/[^/]+\/(src|dist|lib|internal)(\/|$)/.test(spec) || /\.(ts|js)$/.test(spec))
            violations.push(`${relative(REPO_ROOT, file)}: ${spec}`);
        }
      }
      // Relative imports must not climb out of the package either.
      for (const file of sourceFiles(join(dir, 'src'))) {
        const code = readFileSync(file, 'utf8');
        for (const m of code.matchAll(/\bfrom\s*['"](\.\.?\/[^'"]+)['"]/g)) {
          const resolved = relative(dir, join(file, '..', m[1]!));
          if (resolved.startsWith('..'))
            violations.push(`${relative(REPO_ROOT, file)}: ${m[1]} leaves the package`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('the import scanner finds the forms it must catch', () => {
    // Built from pieces so this file's own fixture does not trip the scans above.
    const bf = (rest: string) => ['@backupforge', rest].join('/');
    const code = [
      `import { a } from '${bf('engine')}';`,
      `import type { B } from "${bf('common')}";`,
      `export { c } from '${bf('storage/memory')}';`,
      `import '${bf('agent-fs')}';`,
      `const m = await import('${bf('forge')}');`,
      `import {\n  x,\n  y,\n} from '${bf('engine/src/repository.ts')}';`,
      `// not an import: '${bf('nothing')}'`,
    ].join('\n');
    expect(backupforgeSpecifiers(code).sort()).toEqual(
      ['agent-fs', 'common', 'engine', 'engine/src/repository.ts', 'forge', 'storage/memory'].map(bf).sort(),
    );
  });
});
