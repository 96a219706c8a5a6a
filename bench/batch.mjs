// Benchmark 1, target 4: one request creating 64 tensors of 64 KiB, with the service's defaults. The service's CPU
// for that request (all its threads, from /proc/<pid>/task/*/schedstat, in ns) divided by 64, against the kernel's
// part of one tensor timed without HTTP (lib/floor-ops.mjs): a block of the same 64 creates in this process, run
// between the service's requests, so that both halves of each ratio see the same moment of a shared, noisy machine
// (measured once before the service instead, the floor and the request could be minutes and a neighbour's load
// apart: 1.40 and 1.66 on the same build). Each request under a namespace root of its own, so that all 64 files are
// made fresh (O_EXCL open, fstat, ftruncate, posix_fallocate; the fd stays with the segment); and, for information,
// all under one root, so that after the first round the 64 come from the pool (fstat, rename).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH_DIR, json, median, request, RUN_PREFIX, runJson, sleep, startServer, startService } from './lib/common.mjs'
import { floorOps } from './lib/floor-ops.mjs'

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
// before the floor's block and again before the request, 5 ms for the target, so that nothing a release left behind
// runs in the next create's window (nothing does since small files are zeroed before the release answers: measured
// 0 µs in the gap) and each starts from the same idle machine; back to back for information. `floor`: the block of
// the same work without HTTP, timed before each measured request.
async function perTensor (svc, { iters, warmup, namespace, expectDelete = 200, gapMs = 5, floor }) {
  const samples = []
  const floors = []
  for (let i = 0; i < warmup + iters; i++) {
    if (floor !== undefined && i >= warmup) {
      floors.push(await floor())
      if (gapMs > 0) await sleep(gapMs)
    }
    const ns = namespace(i)
    const before = threadsCpuUs(svc.pid)
    await json(svc.port, 'POST', '/v1/segments', body(ns), 201)
    const after = threadsCpuUs(svc.pid)
    if (i >= warmup) samples.push((after - before) / TENSORS)
    const res = await request(svc.port, 'DELETE', `/v1/segments?namespace=${ns}`)
    if (res.status !== expectDelete) throw new Error(`DELETE namespace: ${res.status}`)
    if (gapMs > 0) await sleep(gapMs)
  }
  return { median: median(samples), p90: [...samples].sort((a, b) => a - b)[Math.floor(samples.length * 0.9)], floor: floors.length > 0 ? median(floors) : undefined }
}

export async function runBatch ({ iters = 100, warmup = 100 } = {}) {
  // For information: the same floor in a hot loop of 512, in a process of its own, before the service starts.
  const hotLoop = await runJson(process.execPath, [join(BENCH_DIR, 'lib/floor.mjs'), JSON.stringify({ prefix: `${RUN_PREFIX}floor_`, n: 512, blocks: 9, size: SIZE })])
  const ops = floorOps({ prefix: `${RUN_PREFIX}pair_`, n: TENSORS, size: SIZE })
  const svc = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'batch', defaultStateDir: true })
  try {
    await ops.freshCreate() // the floor's code warmed up too
    await ops.pooledCreate()
    const f = await perTensor(svc, { iters, warmup, namespace: (i) => `batch${i}/x`, floor: ops.freshCreate })
    const backToBack = await perTensor(svc, { iters, warmup: 0, namespace: (i) => `next${i}/x`, gapMs: 0, floor: ops.freshCreate })
    const p = await perTensor(svc, { iters, warmup, namespace: (i) => `batch/${i}`, floor: ops.pooledCreate })
    const bare = await bareHttp({ iters, warmup })
    return { hotLoop, fresh: f, backToBack, pooled: p, bare: bare.gap, bareBackToBack: bare.backToBack, ratioFresh: f.median / f.floor, ratioFreshHotLoop: f.median / hotLoop.freshCreate, ratioPooled: p.median / p.floor, tensors: TENSORS, size: SIZE }
  } finally {
    ops.cleanup()
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
