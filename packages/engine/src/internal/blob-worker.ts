// Worker thread: hashes and seals blobs off the main thread. Loaded by worker-pool.ts.
// Runs from dist (compiled) or from src (Node >= 22.18 strips the types).
import { parentPort, workerData } from 'node:worker_threads';
import type { CompressionSettings } from '../compression.ts';
import { blobId } from '../crypto/master-key.ts';
import { type BlobType, sealBlob } from '../format/blob-codec.ts';
import { GcPacer } from './gc.ts';

interface Init {
  encKey: Uint8Array;
  macKey: Uint8Array;
  compression: CompressionSettings;
}

type Task =
  | { seq: number; op: 'hash'; data: Uint8Array }
  | { seq: number; op: 'seal'; data: Uint8Array; id: Uint8Array; type: BlobType };

const init = workerData as Init;
// Workers allocate a ciphertext (and compressed) buffer per blob and nothing else: collect often.
const pacer = new GcPacer(64 * 1024 * 1024, 2 * 1024 * 1024);
const port = parentPort;
if (!port) throw new Error('blob-worker must run in a worker thread');

port.on('message', (t: Task) => {
  try {
    if (t.op === 'hash') {
      const id = blobId(init.macKey, t.data);
      port.postMessage({ seq: t.seq, id, data: t.data }, [t.data.buffer as ArrayBuffer]);
    } else {
      const s = sealBlob(init.encKey, { id: t.id, type: t.type, data: t.data }, init.compression);
      pacer.add(t.data.length);
      const sealed = new Uint8Array(s.sealed.buffer, s.sealed.byteOffset, s.sealed.byteLength);
      const transfer =
        sealed.byteLength === sealed.buffer.byteLength && sealed.byteOffset === 0
          ? [sealed.buffer as ArrayBuffer]
          : [];
      port.postMessage({ seq: t.seq, sealed, compression: s.compression, rawLength: s.rawLength }, transfer);
    }
  } catch (e) {
    port.postMessage({ seq: t.seq, error: e instanceof Error ? e.message : String(e) });
  }
});
