// Throughput of the candidate chunk pipeline primitives on this machine (Node 24).
//
//   node scripts/run.mjs node --conditions=@backupforge/source packages/engine/bench/hash-bench.ts
//
// Every measurement processes 64 MiB as 64 chunks of 1 MiB (the default average chunk size) and
// reports the best of 3 runs in MiB/s of input. Not a test: nothing is asserted.
import { createCipheriv, createHash, createHmac, hash, randomBytes } from 'node:crypto';
import { constants as zlibConstants, zstdCompressSync } from 'node:zlib';
import { createBLAKE3 } from 'hash-wasm';
import { compressSync as lz4CompressSync } from 'lz4-napi';
import { chunkBuffer, FastCdcChunker } from '../src/chunker/fastcdc.ts';
import { gearTable } from '../src/chunker/gear-table.ts';

const MiB = 1024 * 1024;
const TOTAL = 64 * MiB;
const RUNS = 3;

function textLike(length: number): Buffer {
  // Log-/source-like text: lines of words from a small vocabulary, numbers and timestamps.
  const words =
    'the of and to in backup chunk repository snapshot error warning info debug file path user host ' +
    'config index pack blob tree data value true false null return const function import export ' +
    'interface string number await async request response status ok failed retry timeout'.split(' ');
  const out = Buffer.alloc(length);
  let x = 0x12345678;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  let pos = 0;
  let line = 0;
  while (pos < length) {
    let s = `2025-01-${String(1 + rnd(28)).padStart(2, '0')}T${String(rnd(24)).padStart(2, '0')}:${String(rnd(60)).padStart(2, '0')}:00Z [${['INFO', 'WARN', 'DEBUG'][rnd(3)]}] #${line++}`;
    const n = 5 + rnd(12);
    for (let i = 0; i < n; i++) s += ` ${words[rnd(words.length)]}${rnd(5) === 0 ? `=${rnd(100000)}` : ''}`;
    pos += out.write(`${s}\n`, pos);
  }
  return out;
}

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < buf.length; o += MiB) out.push(buf.subarray(o, o + MiB));
  return out;
}

async function bench(name: string, bytes: number, fn: () => unknown, note = ''): Promise<void> {
  fn(); // warm-up
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const rate = bytes / MiB / best;
  console.log(`${name.padEnd(44)} ${rate.toFixed(0).padStart(7)} MiB/s${note ? `  ${note}` : ''}`);
}

const random = randomBytes(TOTAL);
const text = textLike(TOTAL);
const randomChunks = chunks(random);
const textChunks = chunks(text);
const key = randomBytes(32);

console.log(
  `node ${process.version}, ${TOTAL / MiB} MiB in ${randomChunks.length} chunks of 1 MiB, best of ${RUNS}`,
);

await bench('HMAC-SHA256 (node:crypto, createHmac/chunk)', TOTAL, () => {
  for (const c of randomChunks) createHmac('sha256', key).update(c).digest();
});
await bench('SHA-256 (node:crypto, createHash/chunk)', TOTAL, () => {
  for (const c of randomChunks) createHash('sha256').update(c).digest();
});
await bench('SHA-256 (node:crypto, crypto.hash one-shot)', TOTAL, () => {
  for (const c of randomChunks) hash('sha256', c, 'buffer');
});
const blake3 = await createBLAKE3(256, key);
await bench('BLAKE3 keyed (hash-wasm, reused hasher)', TOTAL, () => {
  for (const c of randomChunks) {
    blake3.init();
    blake3.update(c);
    blake3.digest('binary');
  }
});

const fastcdc = new FastCdcChunker({ gear: gearTable(new Uint8Array(32)) });
let nChunks = 0;
await bench('FastCDC chunking (256K/1M/4M, one 64 MiB buf)', TOTAL, () => {
  nChunks = 0;
  for (const _ of chunkBuffer(random, fastcdc)) nChunks++;
});
console.log(`${''.padEnd(44)} (${nChunks} chunks, mean ${(TOTAL / nChunks / 1024).toFixed(0)} KiB)`);

// A long run, as in a backup of a large disk image: 2 GiB through one chunker. V8 optimises
// `cut` itself after a few hundred calls; when it inlined the scan loop there, the loop ran
// 3.4x slower from then on (see `scan` in fastcdc.ts). First and last 256 MiB should match.
{
  const long = new FastCdcChunker({ gear: gearTable(new Uint8Array(32)) });
  const rates: number[] = [];
  for (let pass = 0; pass < 32; pass++) {
    const t0 = process.hrtime.bigint();
    for (const _ of chunkBuffer(random, long));
    rates.push(TOTAL / MiB / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  console.log(
    `${'FastCDC, 2 GiB in one chunker: first/last 256 MiB'.padEnd(44)} ${mean(rates.slice(0, 4)).toFixed(0).padStart(7)} / ${mean(rates.slice(-4)).toFixed(0)} MiB/s`,
  );
}

await bench('AES-256-GCM encrypt (node:crypto, IV/chunk)', TOTAL, () => {
  for (const c of randomChunks) {
    const cipher = createCipheriv('aes-256-gcm', key, randomBytes(12));
    cipher.update(c);
    cipher.final();
    cipher.getAuthTag();
  }
});

for (const [label, data] of [
  ['text', textChunks],
  ['random', randomChunks],
] as const) {
  let outBytes = 0;
  await bench(`zstd level 3 (node:zlib) on ${label}`, TOTAL, () => {
    outBytes = 0;
    for (const c of data)
      outBytes += zstdCompressSync(c, { params: { [zlibConstants.ZSTD_c_compressionLevel]: 3 } }).length;
  });
  console.log(`${''.padEnd(44)} (ratio ${(outBytes / TOTAL).toFixed(3)})`);
  await bench(`lz4 (lz4-napi compressSync) on ${label}`, TOTAL, () => {
    outBytes = 0;
    for (const c of data) outBytes += lz4CompressSync(c).length;
  });
  console.log(`${''.padEnd(44)} (ratio ${(outBytes / TOTAL).toFixed(3)})`);
}
