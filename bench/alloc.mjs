// Benchmark 4: steady-state creation latency of one 2880x1620x3 uint8 tensor (POST /v1/segments, then DELETE,
// repeated, namespace bench/obj-<n>) under three configurations, interleaved request by request:
//   pooled    defaults: TENSORSHM_RESERVE=true and the recycling pool on (TENSORSHM_POOL_BYTES=256MiB)
//   ftruncate TENSORSHM_RESERVE=false, TENSORSHM_POOL_BYTES=0: the file gets a size and no pages
//   cold      TENSORSHM_RESERVE=true, TENSORSHM_POOL_BYTES=0: posix_fallocate on every creation
// Sequential requests from one keep-alive client; only the POST is timed.
import http from 'node:http'
import { closeSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { median, p99, request, sleep, startService } from './lib/common.mjs'

export const SHAPE = [2880, 1620, 3]
export const NBYTES = SHAPE.reduce((a, b) => a * b, 1)

const CONFIGS = {
  pooled: {},
  ftruncate: { TENSORSHM_RESERVE: 'false', TENSORSHM_POOL_BYTES: '0' },
  cold: { TENSORSHM_RESERVE: 'true', TENSORSHM_POOL_BYTES: '0' }
}

export async function runAlloc ({ iters = 200, warmup = 30, block = 25, thinkIters = 60, thinkMs = 20, script } = {}) {
  const services = {}
  try {
    for (const [label, env] of Object.entries(CONFIGS)) services[label] = await startService(env, { label: `alloc-${label}`, script })
    const agents = Object.fromEntries(Object.keys(CONFIGS).map((k) => [k, new http.Agent({ keepAlive: true, maxSockets: 1 })]))
    let n = 0
    async function once (label) {
      const { port } = services[label]
      const body = { namespace: `bench/obj-${++n}`, tensors: { img: { shape: SHAPE, dtype: 'uint8' } } }
      const res = await request(port, 'POST', '/v1/segments', { body, agent: agents[label] })
      if (res.status !== 201) throw new Error(`POST ${label}: ${res.status} ${res.body}`)
      const name = JSON.parse(res.body).segments.img.name
      const del = await request(port, 'DELETE', `/v1/segments/${name}`, { agent: agents[label] })
      if (del.status !== 204) throw new Error(`DELETE ${label}: ${del.status}`)
      return res.ms
    }
    const labels = Object.keys(CONFIGS)
    const tight = Object.fromEntries(labels.map((k) => [k, []]))
    const think = Object.fromEntries(labels.map((k) => [k, []]))
    // Blocks of `block` back-to-back iterations per configuration, rotating: within a block nothing else runs,
    // so the pool's background zeroing gets no free time from the other configurations' requests.
    for (const label of labels) for (let i = 0; i < warmup; i++) await once(label)
    for (let round = 0; round * block < iters; round++) {
      const order = labels.map((_, j) => labels[(round + j) % labels.length])
      for (const label of order) for (let i = 0; i < Math.min(block, iters - round * block); i++) tight[label].push(await once(label))
    }
    // The same with client work between the release and the next creation (the pool zeroes in the background).
    for (let i = 0; i < thinkIters; i++) {
      for (const label of labels) {
        await sleep(thinkMs)
        think[label].push(await once(label))
      }
    }
    for (const a of Object.values(agents)) a.destroy()
    const sum = (list) => ({ median: median(list), p99: p99(list), n: list.length })
    const out = { nbytes: NBYTES, tight: {}, think: {}, thinkMs }
    for (const label of labels) { out.tight[label] = sum(tight[label]); out.think[label] = sum(think[label]) }
    out.ratio = out.tight.pooled.median / out.tight.ftruncate.median
    out.ratioP99 = out.tight.pooled.p99 / out.tight.ftruncate.p99
    out.thinkRatio = thinkIters > 0 ? out.think.pooled.median / out.think.ftruncate.median : NaN
    out.coldMsPerMiB = (out.tight.cold.median - out.tight.ftruncate.median) / (NBYTES / 2 ** 20)
    Object.assign(out, floors())
    return out
  } finally {
    for (const s of Object.values(services)) await s.stop()
  }
}

/**
 * The floor under benchmark 4, measured here: recycling must zero the tensor's bytes (the service's pwrite loop,
 * 1.5 MiB at a time), and back to back nothing hides that time. And what the ftruncate-only baseline defers to its
 * client: the first write into a sparse tmpfs file allocates every page, against a write into recycled pages.
 */
function floors (reps = 30) {
  const CHUNK = 3 * 2 ** 19
  const chunk = Buffer.alloc(CHUNK)
  const data = Buffer.alloc(CHUNK, 7)
  const fill = (fd, buf) => { for (let at = 0; at < NBYTES; at += CHUNK) writeSync(fd, buf, 0, Math.min(CHUNK, NBYTES - at), at) }
  const timed = (fn) => { const t0 = performance.now(); fn(); return performance.now() - t0 }
  const path = `/dev/shm/tshmbench_floor_${randomBytes(4).toString('hex')}`
  const zero = []
  const sparse = []
  const backed = []
  try {
    for (let i = 0; i < reps; i++) {
      const fd = openSync(path, 'w+')
      ftruncateSync(fd, NBYTES)
      sparse.push(timed(() => fill(fd, data)))
      zero.push(timed(() => fill(fd, chunk)))
      backed.push(timed(() => fill(fd, data)))
      closeSync(fd)
      unlinkSync(path)
    }
  } finally {
    try { unlinkSync(path) } catch {}
  }
  return { zeroMs: median(zero), firstWriteSparseMs: median(sparse), firstWriteBackedMs: median(backed) }
}
