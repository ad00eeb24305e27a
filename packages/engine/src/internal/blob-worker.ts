// Worker thread: compresses and encrypts blobs (backup), or decrypts, decompresses and verifies
// runs of blobs (restore; small files are written here too), off the main thread. Loaded by worker-pool.ts.
// Runs from dist (compiled) or from src (Node >= 22.18 strips the types).
import { parentPort, workerData } from 'node:worker_threads';
import type { ChunkerParams } from '../chunker/index.ts';
import type { CompressionSettings } from '../compression.ts';
import { type BlobType, sealBlob } from '../format/blob-codec.ts';
import { FileLane } from './file-lane.ts';
import { GcPacer } from './gc.ts';
import { type LocalWrite, type LocalWriter, openAndWrite } from './local-writes.ts';
import { openRun, type RunBlob } from './open-run.ts';
import { readSmallBatch, type SmallBatch, type SmallFileRequest, sealSmallBatch } from './small-files.ts';

interface Init {
  encKey: Uint8Array;
  macKey?: Uint8Array;
  compression: CompressionSettings;
}

interface OpenTask {
  kind: 'open';
  seq: number;
  sealed: Uint8Array;
  blobs: RunBlob[];
  out: Uint8Array;
}

interface OpenWriteTask {
  kind: 'openWrite';
  seq: number;
  sealed: Uint8Array;
  blobs: RunBlob[];
  rawLength: number;
  files: LocalWrite[];
  writer: LocalWriter;
}

interface ReadSmallTask {
  kind: 'readSmall';
  seq: number;
  batch: number;
  files: SmallFileRequest[];
}

interface SealSmallTask {
  kind: 'sealSmall';
  seq: number;
  batch: number;
  want: Uint8Array;
  out?: Uint8Array;
}

interface LaneTask {
  kind: 'laneStep' | 'laneClose';
  seq: number;
  lane: number;
  path?: string;
  params?: ChunkerParams;
  want?: Uint8Array;
  spare?: Uint8Array;
}

interface SealTask {
  seq: number;
  data: Uint8Array;
  id: Uint8Array;
  type: BlobType;
}

const init = workerData as Init;
// Workers allocate a ciphertext (and compressed) buffer per blob and nothing else: collect often.
const pacer = new GcPacer(64 * 1024 * 1024, 2 * 1024 * 1024);
const port = parentPort;
if (!port) throw new Error('blob-worker must run in a worker thread');

function onOpen(t: OpenTask): void {
  const transfer = [t.out.buffer as ArrayBuffer];
  if (t.sealed.buffer !== t.out.buffer) transfer.push(t.sealed.buffer as ArrayBuffer);
  const failure = openRun({ encKey: init.encKey, macKey: init.macKey! }, t.sealed, t.blobs, t.out);
  pacer.add(t.out.length);
  port!.postMessage({ seq: t.seq, out: t.out, sealed: t.sealed, failure }, transfer);
}

async function onOpenWrite(t: OpenWriteTask): Promise<void> {
  try {
    const keys = { encKey: init.encKey, macKey: init.macKey! };
    const r = await openAndWrite(keys, t.sealed, t.blobs, t.rawLength, t.files, t.writer);
    pacer.add(t.rawLength);
    port!.postMessage({ seq: t.seq, ...r });
  } catch (e) {
    port!.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  }
}

/** Batches read and waiting for their seal message; arenas of sealed batches, for reuse. */
const batches = new Map<number, SmallBatch>();
const spareArenas: Uint8Array[] = [];

function onReadSmall(t: ReadSmallTask): void {
  try {
    const b = readSmallBatch(init.macKey!, t.files, spareArenas.pop());
    batches.set(t.batch, b);
    port!.postMessage({ seq: t.seq, results: b.results, ids: b.ids });
  } catch (e) {
    port!.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  }
}

function onSealSmall(t: SealSmallTask): void {
  const b = batches.get(t.batch);
  batches.delete(t.batch);
  try {
    if (!b) throw new Error(`small-file batch ${t.batch} is unknown`);
    const r = sealSmallBatch(init.encKey, init.compression, b, t.want, t.out);
    if (spareArenas.length < 4) spareArenas.push(b.arena);
    pacer.add(b.arena.byteLength);
    port!.postMessage({ seq: t.seq, out: r.out, blobs: r.blobs }, [r.out.buffer as ArrayBuffer]);
  } catch (e) {
    port!.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  }
}

function sealAndReply(seq: number, id: Uint8Array, type: BlobType, data: Uint8Array): void {
  try {
    // Sealed in place: the result goes back in the buffer that brought the plaintext, which the
    // main thread then returns to its pool.
    const s = sealBlob(init.encKey, { id, type, data }, init.compression, true);
    pacer.add(data.length);
    const transfer = [s.sealed.buffer as ArrayBuffer];
    if (s.sealed.buffer !== data.buffer) transfer.push(data.buffer as ArrayBuffer);
    port!.postMessage(
      { seq, sealed: s.sealed, compression: s.compression, rawLength: s.rawLength },
      transfer,
    );
  } catch (e) {
    port!.postMessage({ seq, error: e instanceof Error ? e.message : String(e) });
  }
}

/** Large files being chunked here, by lane number. */
const lanes = new Map<number, FileLane>();

function onLane(t: LaneTask): void {
  try {
    if (t.kind === 'laneClose') {
      lanes.get(t.lane)?.close();
      lanes.delete(t.lane);
      port!.postMessage({ seq: t.seq });
      return;
    }
    let lane = lanes.get(t.lane);
    if (!lane) {
      lane = new FileLane(t.path!, t.params!, init.macKey!);
      lanes.set(t.lane, lane);
    }
    const r = lane.step(t.want, t.spare);
    pacer.add(8 * 1024 * 1024); // about one segment
    port!.postMessage({ seq: t.seq, ...r }, r.out ? [r.out.buffer as ArrayBuffer] : []);
  } catch (e) {
    port!.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  }
}

port.on('message', (t: SealTask | OpenTask | OpenWriteTask | ReadSmallTask | SealSmallTask | LaneTask) => {
  if ('kind' in t) {
    if (t.kind === 'open') onOpen(t);
    else if (t.kind === 'openWrite') void onOpenWrite(t);
    else if (t.kind === 'readSmall') onReadSmall(t);
    else if (t.kind === 'sealSmall') onSealSmall(t);
    else onLane(t);
    return;
  }
  sealAndReply(t.seq, t.id, t.type, t.data);
});
