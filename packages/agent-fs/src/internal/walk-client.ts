import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ForgeError, type ForgeErrorCode, type SourceEvent } from '@backupforge/common';
import { openFileReader } from './file-content-reader.ts';
import { runWalk, type WalkRequest } from './walk-run.ts';

type Message =
  | { events: SourceEvent[] }
  | { done: true }
  | { error: { code: ForgeErrorCode; message: string; hint?: string } };

function workerUrl(): URL | undefined {
  for (const rel of ['../walk-worker.js', './walk-worker.js', '../walk-worker.ts']) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u;
  }
  return undefined;
}

/**
 * Walks on a worker thread and yields its events in order: the system calls, sorting, exclude
 * matching and metadata of the walk then cost the main thread nothing but receiving them (the
 * engine's own per-entry work stays there). The worker starts when the iterator is created, so
 * a caller can start the walk before it is ready to take entries (the engine does, while it
 * loads the index); `return()` stops it whether or not it was read. Falls back to walking on
 * this thread when the worker module cannot be found.
 */
export function walkOnWorker(req: WalkRequest, signal?: AbortSignal): AsyncIterable<SourceEvent> {
  return { [Symbol.asyncIterator]: () => startWalk(req, signal) };
}

function startWalk(req: WalkRequest, signal?: AbortSignal): AsyncIterator<SourceEvent> {
  const url = workerUrl();
  if (!url) return runWalk(req, signal);
  const fromSource = url.pathname.endsWith('.ts');
  const worker = new Worker(url, {
    workerData: req,
    execArgv: fromSource ? ['--conditions=@backupforge/source', '--disable-warning=ExperimentalWarning'] : [],
  });
  const inbox: Message[] = [];
  let wake: (() => void) | undefined;
  const push = (m: Message) => {
    inbox.push(m);
    wake?.();
  };
  worker.on('message', push);
  worker.on('error', (e) =>
    push({ error: { code: 'FORGE_INTERNAL', message: `walk worker failed: ${e.message}` } }),
  );
  worker.on('exit', (code) =>
    push({ error: { code: 'FORGE_INTERNAL', message: `walk worker exited with code ${code}` } }),
  );
  const onAbort = () => worker.postMessage({ abort: true });
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    signal?.removeEventListener('abort', onAbort);
    worker.removeAllListeners('exit');
    await worker.terminate();
  };
  async function* events(): AsyncGenerator<SourceEvent> {
    try {
      for (;;) {
        while (inbox.length === 0) {
          await new Promise<void>((r) => {
            wake = r;
          });
        }
        const m = inbox.shift()!;
        if ('done' in m) return;
        if ('error' in m) {
          const { code, message, hint } = m.error;
          throw new ForgeError(code, message, hint === undefined ? {} : { hint });
        }
        worker.postMessage({ ack: true });
        for (const ev of m.events) {
          // The worker may have walked past this point already: stop here as the walk would.
          if (signal?.aborted) {
            throw new ForgeError('FORGE_ABORTED', 'the backup walk was cancelled', { cause: signal.reason });
          }
          yield revive(ev);
        }
      }
    } finally {
      await stop();
    }
  }
  const gen = events();
  return {
    next: () => gen.next(),
    // A generator never started skips its `finally`: stop the worker here too.
    return: async (value?: unknown) => {
      const r = await gen.return(value as undefined);
      await stop();
      return r;
    },
  };
}

/** A file entry gets back what could not cross threads: its `open`. */
function revive(ev: SourceEvent): SourceEvent {
  if (ev.kind !== 'entry' || ev.meta.type !== 'file' || ev.localPath === undefined) return ev;
  const abs = ev.localPath;
  return Object.assign(ev, { open: () => openFileReader(abs) });
}
