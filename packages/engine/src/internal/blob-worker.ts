// Worker thread: compresses and encrypts blobs (backup), or decrypts, decompresses and verifies
// runs of blobs (restore; small files are written here too), off the main thread. Loaded by worker-pool.ts.
// Runs from dist (compiled) or from src (Node >= 22.18 strips the types).
import { isMarkedAsUntransferable, parentPort, workerData } from 'node:worker_threads';
import type { ChunkerParams } from '../chunker/index.ts';
import type { CompressionSettings } from '../compression.ts';
import { blobId } from '../crypto/master-key.ts';
import { type BlobType, sealBlob } from '../format/blob-codec.ts';
import { packId } from '../format/pack.ts';
import { FileLane } from './file-lane.ts';
import { GcPacer } from './gc.ts';
import { type LocalWrite, type LocalWriter, openAndWrite } from './local-writes.ts';
import { openRun, type RunBlob } from './open-run.ts';
import { readSmallBatch, type SmallBatch, type SmallFileRequest, sealSmallBatch } from './small-files.ts';
import { verifyPack } from './verify-pack.ts';

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

interface VerifyPackTask {
  kind: 'verifyPack';
  seq: number;
  bytes: Uint8Array;
  name: string;
  blobs: RunBlob[];
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
  direct?: boolean;
  want?: Uint8Array;
  spare?: Uint8Array;
}

interface HashTask {
  kind: 'hash';
  seq: number;
  data: Uint8Array;
}

interface PackHashTask {
  kind: 'packHash';
  seq: number;
  bytes: Uint8Array;
}

interface HeldTask {
  kind: 'held';
  seq: number;
  held: number;
  seal: boolean;
  id: Uint8Array;
  type: BlobType;
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

/** What a task sends back (besides its sequence number), and the buffers that move with it. */
interface Reply {
  readonly msg: Record<string, unknown>;
  readonly transfer?: ArrayBuffer[];
}

function onOpen(t: OpenTask): Reply {
  const transfer = [t.out.buffer as ArrayBuffer];
  if (t.sealed.buffer !== t.out.buffer) transfer.push(t.sealed.buffer as ArrayBuffer);
  const failure = openRun({ encKey: init.encKey, macKey: init.macKey! }, t.sealed, t.blobs, t.out);
  pacer.add(t.out.length);
  return { msg: { out: t.out, sealed: t.sealed, failure }, transfer };
}

async function onOpenWrite(t: OpenWriteTask): Promise<Reply> {
  const keys = { encKey: init.encKey, macKey: init.macKey! };
  const r = await openAndWrite(keys, t.sealed, t.blobs, t.rawLength, t.files, t.writer);
  pacer.add(t.rawLength);
  return { msg: { ...r } };
}

function onVerifyPack(t: VerifyPackTask): Reply {
  // Each blob's plaintext (and its decrypted copy) is garbage at once: collect as they go.
  const keys = { encKey: init.encKey, macKey: init.macKey! };
  const verdict = verifyPack(keys, t.bytes, t.name, t.blobs, (n) => pacer.add(n));
  // The pack's buffer goes back with the verdict, for the next pack.
  return { msg: { ...verdict, bytes: t.bytes }, transfer: [t.bytes.buffer as ArrayBuffer] };
}

/** Batches read and waiting for their seal message; arenas of sealed batches, for reuse. */
const batches = new Map<number, SmallBatch>();
const spareArenas: Uint8Array[] = [];

function onReadSmall(t: ReadSmallTask): Reply {
  const b = readSmallBatch(init.macKey!, t.files, spareArenas.pop());
  batches.set(t.batch, b);
  return { msg: { results: b.results, ids: b.ids } };
}

function onSealSmall(t: SealSmallTask): Reply {
  const b = batches.get(t.batch);
  batches.delete(t.batch);
  if (!b) throw new Error(`small-file batch ${t.batch} is unknown`);
  const r = sealSmallBatch(init.encKey, init.compression, b, t.want, t.out);
  if (spareArenas.length < 4) spareArenas.push(b.arena);
  pacer.add(b.arena.byteLength);
  return { msg: { out: r.out, blobs: r.blobs }, transfer: [r.out.buffer as ArrayBuffer] };
}

function onSeal(t: SealTask): Reply {
  // Sealed in place: the result goes back in the buffer that brought the plaintext, which the
  // main thread then returns to its pool.
  const s = sealBlob(init.encKey, { id: t.id, type: t.type, data: t.data }, init.compression, true);
  pacer.add(t.data.length);
  const transfer = movable(s.sealed, t.data);
  return { msg: { sealed: s.sealed, compression: s.compression, rawLength: s.rawLength }, transfer };
}

/**
 * The buffers of `views` that can move with a reply, each once. A small blob's sealed bytes may
 * sit in Node's shared Buffer pool, which cannot move: those are copied into the reply.
 */
function movable(...views: Uint8Array[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const v of views) {
    const b = v.buffer as ArrayBuffer;
    if (!isMarkedAsUntransferable(b) && !out.includes(b)) out.push(b);
  }
  return out;
}

/** Names a finished pack; its buffer goes back with the name. */
function onPackHash(t: PackHashTask): Reply {
  return { msg: { id: packId(t.bytes), bytes: t.bytes }, transfer: [t.bytes.buffer as ArrayBuffer] };
}

/** Chunks hashed here and waiting to be sealed or handed back, by number. */
const held = new Map<number, Uint8Array>();
let heldSeq = 0;

function onHash(t: HashTask): Reply {
  const id = blobId(init.macKey!, t.data);
  held.set(++heldSeq, t.data);
  return { msg: { id, held: heldSeq } };
}

function onHeld(t: HeldTask): Reply {
  const data = held.get(t.held);
  held.delete(t.held);
  if (!data) throw new Error(`held chunk ${t.held} is unknown`);
  if (!t.seal) return { msg: { data }, transfer: movable(data) };
  return onSeal({ seq: t.seq, data, id: t.id, type: t.type });
}

/** Large files being chunked here, by lane number. */
const lanes = new Map<number, FileLane>();

async function onLane(t: LaneTask): Promise<Reply> {
  if (t.kind === 'laneClose') {
    lanes.get(t.lane)?.close();
    lanes.delete(t.lane);
    return { msg: {} };
  }
  let lane = lanes.get(t.lane);
  if (!lane) {
    lane = new FileLane(t.path!, t.params!, init.macKey!, t.direct ?? false);
    lanes.set(t.lane, lane);
  }
  const r = await lane.step(t.want, t.spare);
  pacer.add(8 * 1024 * 1024); // about one segment
  return { msg: { ...r }, transfer: r.out ? [r.out.buffer as ArrayBuffer] : [] };
}

type Task =
  | SealTask
  | HashTask
  | HeldTask
  | PackHashTask
  | OpenTask
  | OpenWriteTask
  | VerifyPackTask
  | ReadSmallTask
  | SealSmallTask
  | LaneTask;

function handle(t: Task): Reply | Promise<Reply> {
  if (!('kind' in t)) return onSeal(t);
  if (t.kind === 'hash') return onHash(t);
  if (t.kind === 'held') return onHeld(t);
  if (t.kind === 'packHash') return onPackHash(t);
  if (t.kind === 'open') return onOpen(t);
  if (t.kind === 'openWrite') return onOpenWrite(t);
  if (t.kind === 'verifyPack') return onVerifyPack(t);
  if (t.kind === 'readSmall') return onReadSmall(t);
  if (t.kind === 'sealSmall') return onSealSmall(t);
  return onLane(t);
}

// Every task gets one reply: its result, or the message of the error that stopped it.
port.on('message', (t: Task) => {
  const send = (r: Reply) => port.postMessage({ ...r.msg, seq: t.seq }, r.transfer ?? []);
  const fail = (e: unknown) =>
    port.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  try {
    const r = handle(t);
    if (r instanceof Promise) r.then(send).catch(fail);
    else send(r);
  } catch (e) {
    fail(e);
  }
});
