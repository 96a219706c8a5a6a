// Benchmark 1, target 4: one request creating 64 tensors of 64 KiB, with the service's defaults. The service's CPU
// for that request (all its threads, from /proc/<pid>/task/*/schedstat, in ns) divided by 64, against the kernel's
// part of one tensor timed in a loop without HTTP (lib/floor.mjs). Each request under a namespace root of its own,
// so that all 64 files are made fresh (O_EXCL open, fstat, ftruncate, posix_fallocate; the fd stays with the
// segment); and, for information, all under one root, so that after the first round the 64 come from the pool
// (fstat, rename).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH_DIR, json, median, request, RUN_PREFIX, runJson, sleep, startServer, startService } from './lib/common.mjs'

const TENSORS = 64
const SIZE = 65536

/** On-CPU time of every thread of `pid` so far, in µs. */
function threadsCpuUs (pid) {
  let ns = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) } catch {}
  }
  return ns / 1000
}

const body = (namespace) => ({ namespace, tensors: Object.fromEntries(Array.from({ length: TENSORS }, (_, k) => [`t${k}`, { shape: [SIZE], dtype: 'uint8' }])) })

// Warm-up: 100 requests (6400 tensors). Measured per block of 30 in a fresh service, the first 90 cost 10-50% more
// than the rest (JIT tiers still compiling the create path); the bare app gets the same warm-up. `gapMs`: idle time
// after each release, 5 ms for the target, so that nothing a release left behind runs in the next create's window
// (nothing does since small files are zeroed before the release answers: measured 0 µs in the gap); back to back
// for information, which gives the same figure once warm.
async function perTensor (svc, { iters, warmup, namespace, expectDelete = 200, gapMs = 5 }) {
  const samples = []
  for (let i = 0; i < warmup + iters; i++) {
    const ns = namespace(i)
    const before = threadsCpuUs(svc.pid)
    await json(svc.port, 'POST', '/v1/segments', body(ns), 201)
    const after = threadsCpuUs(svc.pid)
    if (i >= warmup) samples.push((after - before) / TENSORS)
    const res = await request(svc.port, 'DELETE', `/v1/segments?namespace=${ns}`)
    if (res.status !== expectDelete) throw new Error(`DELETE namespace: ${res.status}`)
    if (gapMs > 0) await sleep(gapMs)
  }
  return { median: median(samples), p90: [...samples].sort((a, b) => a - b)[Math.floor(samples.length * 0.9)] }
}

export async function runBatch ({ iters = 100, warmup = 100 } = {}) {
  const floor = await runJson(process.execPath, [join(BENCH_DIR, 'lib/floor.mjs'), JSON.stringify({ prefix: `${RUN_PREFIX}floor_`, n: 512, blocks: 9, size: SIZE })])
  const svc = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'batch', defaultStateDir: true })
  try {
    const f = await perTensor(svc, { iters, warmup, namespace: (i) => `batch${i}/x` })
    const backToBack = await perTensor(svc, { iters, warmup: 0, namespace: (i) => `next${i}/x`, gapMs: 0 })
    const p = await perTensor(svc, { iters, warmup, namespace: (i) => `batch/${i}` })
    const bare = await bareHttp({ iters, warmup })
    return { floor, fresh: f, backToBack, pooled: p, bare: bare.gap, bareBackToBack: bare.backToBack, ratioFresh: f.median / floor.freshCreate, ratioPooled: p.median / floor.pooledCreate, tensors: TENSORS, size: SIZE }
  } finally {
    await svc.stop()
  }
}

/** For information: the bare app of benchmark 1 answering the same 64-tensor POST, its CPU per tensor (HTTP, JSON, names). */
async function bareHttp ({ iters, warmup }) {
  const bare = await startServer('bare-segments.mjs')
  try {
    // The bare app's DELETE of a namespace matches no route: 404, and nothing to release.
    const gap = await perTensor(bare, { iters, warmup, namespace: (i) => `batch${i}/x`, expectDelete: 404 })
    const backToBack = await perTensor(bare, { iters, warmup: 0, namespace: (i) => `next${i}/x`, expectDelete: 404, gapMs: 0 })
    return { gap, backToBack }
  } finally {
    await bare.stop()
  }
}
