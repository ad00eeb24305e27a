import type { SourceEvent } from '@backupforge/common';
import type { ExcludeIfPresentRule } from './exclude-if-present.ts';
import { createExcludeMatcher, readExcludeFiles } from './exclude-matcher.ts';
import { TreeWalker } from './tree-walker.ts';
import { loadIdNames } from './user-names.ts';

/** Everything a walk needs, as plain data (it crosses to the walk worker). */
export interface WalkRequest {
  readonly targets: readonly string[];
  readonly exclude: readonly string[];
  readonly iexclude: readonly string[];
  readonly excludeFiles: readonly string[];
  readonly tagRules: readonly ExcludeIfPresentRule[];
  readonly oneFileSystem: boolean;
  readonly readLinks: boolean;
}

/** Walks the request's targets on this thread (see {@link TreeWalker}). */
export async function* runWalk(
  req: WalkRequest,
  signal?: AbortSignal,
  syncStat = false,
): AsyncGenerator<SourceEvent> {
  const [fromFiles, { users, groups }] = await Promise.all([
    readExcludeFiles(req.excludeFiles),
    loadIdNames(),
  ]);
  const matcher = createExcludeMatcher({ exclude: [...req.exclude, ...fromFiles], iexclude: req.iexclude });
  const walker = new TreeWalker({
    targets: req.targets.filter((t) => !matcher.excludesWithAncestors(t)),
    matcher,
    tagRules: req.tagRules,
    oneFileSystem: req.oneFileSystem,
    readLinks: req.readLinks,
    users,
    groups,
    signal,
    syncStat,
  });
  yield* walker.walk();
}
