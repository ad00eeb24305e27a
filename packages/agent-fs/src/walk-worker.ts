// Worker thread: runs a filesystem walk (lstat, directory listings, excludes, metadata) off the
// main thread and sends its events in batches, a few batches ahead of what the main thread has
// taken. Started by internal/walk-client.ts. Runs from dist (compiled) or from src.
import { parentPort, workerData } from 'node:worker_threads';
import { type SourceEvent, toForgeError } from '@backupforge/common';
import { runWalk, type WalkRequest } from './internal/walk-run.ts';

const port = parentPort;
if (!port) throw new Error('walk-worker must run in a worker thread');

/** Events per message, and messages sent before the main thread has taken them. */
const BATCH = 256;
const AHEAD = 8;
/** A batch goes out when it is full or has waited this long for more (ms). */
const LINGER_MS = 2;

const abort = new AbortController();
let credit = AHEAD;
let wake: (() => void) | undefined;
port.on('message', (m: { ack?: true; abort?: true }) => {
  if (m.abort) abort.abort();
  else credit++;
  wake?.();
});

let batch: SourceEvent[] = [];
let since = performance.now();

async function flush(): Promise<void> {
  while (credit === 0 && !abort.signal.aborted)
    await new Promise<void>((r) => {
      wake = r;
    });
  credit--;
  port!.postMessage({ events: batch });
  batch = [];
  since = performance.now();
}

/** The entry without its `open` function (the main thread adds its own). */
function plain(ev: SourceEvent): SourceEvent {
  if (ev.kind !== 'entry' || !ev.open) return ev;
  const { open: _, ...rest } = ev;
  return rest;
}

try {
  for await (const ev of runWalk(workerData as WalkRequest, abort.signal, true)) {
    batch.push(plain(ev));
    if (batch.length >= BATCH || performance.now() - since > LINGER_MS) await flush();
  }
  if (batch.length > 0) await flush();
  port.postMessage({ done: true });
} catch (e) {
  const fe = toForgeError(e);
  port.postMessage({ error: { code: fe.code, message: fe.message, hint: fe.hint } });
}
