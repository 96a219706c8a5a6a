// Benchmark 6: one service reached over its Unix socket (TENSORSHM_SOCKET) and over TCP loopback, in the same
// run, alternating: benchmark 1's POST+DELETE pairs (autocannon, 16 connections) and benchmark 3's handoff.
// Socket callers' segments are chowned to them and never pooled, so the service runs with the pool off
// (TENSORSHM_POOL_BYTES=0) for both: the two columns then differ by the transport and the peer credentials only.
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { cannon } from './control-plane.mjs'
import { BENCH_DIR, median, p90, ROOT, runJson, startService, WORK } from './lib/common.mjs'

async function handoff (url, iters, warmup) {
  const res = await runJson('python3', [join(BENCH_DIR, 'handoff.py'), '--url', url, '--iters', String(iters), '--warmup', String(warmup)],
    { env: { PYTHONPATH: join(ROOT, 'clients/python/src') } })
  if (res.bad_copies !== 0) throw new Error(`handoff over ${url}: ${res.bad_copies} copies did not carry the producer's bytes`)
  return res.samples
}

/**
 * Releases what a run left under bench/ (the pairs cut off by its end), through the socket as root, who sees every
 * namespace: a root held by a socket caller has no room for the anonymous TCP caller of the next run.
 */
function releaseLeftovers (socketPath) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'DELETE', path: '/v1/segments?namespace=bench' }, (res) => {
      res.resume()
      res.once('end', () => { res.statusCode === 200 ? resolve() : reject(new Error(`DELETE namespace=bench: ${res.statusCode}`)) })
    })
    req.once('error', reject)
    req.end()
  })
}

export async function runLocalSocket ({ reps = 3, duration = 10, warmup = 2, iters = 30, handoffWarmup = 5, log = () => {} } = {}) {
  const socketPath = join(mkdtempSync(join(WORK, 'sock-')), 'tensorshm.sock')
  const svc = await startService({ TENSORSHM_SOCKET: socketPath, TENSORSHM_POOL_BYTES: '0' }, { label: 'local-socket' })
  const pairs = { tcp: [], unix: [] }
  const samples = { tcp: { ref: [], value: [] }, unix: { ref: [], value: [] } }
  try {
    for (let i = 0; i < reps; i++) {
      for (const via of i % 2 === 0 ? ['tcp', 'unix'] : ['unix', 'tcp']) {
        const r = await cannon(svc.port, 'service-pair', { duration, warmup, ...(via === 'unix' ? { socketPath } : {}) })
        pairs[via].push(r)
        await releaseLeftovers(socketPath)
        log(`  pairs ${via.padEnd(4)} ${r.itersPerSec.toFixed(0)} round trips/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors + r.non2xx + r.timeouts}`)
      }
    }
    for (const via of ['tcp', 'unix', 'unix', 'tcp']) {
      const s = await handoff(via === 'unix' ? `unix://${socketPath}` : `http://127.0.0.1:${svc.port}`, Math.ceil(iters / 2), handoffWarmup)
      for (const mode of ['ref', 'value']) samples[via][mode].push(...s[mode].map((x) => x.total))
      log(`  handoff ${via.padEnd(4)} ref ${median(s.ref.map((x) => x.total)).toFixed(1)} ms, value ${median(s.value.map((x) => x.total)).toFixed(1)} ms`)
    }
  } finally {
    await svc.stop()
  }
  const pairSum = (list) => ({ pairsPerSec: median(list.map((r) => r.itersPerSec)), p50: median(list.map((r) => r.p50)), p99: median(list.map((r) => r.p99)), failures: list.reduce((n, r) => n + r.errors + r.non2xx + r.timeouts, 0) })
  const hand = (list) => ({ median: median(list), p90: p90(list), n: list.length })
  return {
    pairs: { tcp: pairSum(pairs.tcp), unix: pairSum(pairs.unix), ratio: median(pairs.unix.map((r, i) => r.itersPerSec / pairs.tcp[i].itersPerSec)) },
    handoff: Object.fromEntries(['tcp', 'unix'].map((via) => [via, { ref: hand(samples[via].ref), value: hand(samples[via].value) }])),
    settings: { reps, duration, warmup, iters, handoffWarmup, pool: 'off' }
  }
}
