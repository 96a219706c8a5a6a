// Benchmark 1: the control plane. Round trips of POST /v1/segments (one [65536] uint8 tensor, namespace
// bench/obj-<n>) then DELETE /v1/segments/{name} of the segment it created, driven by autocannon (16 connections,
// same duration, after a warm-up), against a bare Fastify 5 app answering the same two requests with the same
// shapes and nothing behind them (servers/bare-segments.mjs), alternating. The service runs with its defaults
// (journal on /dev/shm, pool, reserve, metrics, one log line per request at info). For information: a bare Fastify
// echoing 64 KiB of JSON (the tensor sent by value), and the kernel's part of a pair without HTTP (lib/floor.mjs).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runBatch } from './batch.mjs'
import { BENCH_DIR, cpuMs, median, request, runJson, startServer, startService } from './lib/common.mjs'
import { inSituBuild, inSituFigures } from './lib/in-situ.mjs'

let invocation = 0

/** `socketPath`: the same requests over the service's Unix socket instead of TCP to `port`. */
export function cannon (port, scenario, { duration, warmup, connections = 16, socketPath }) {
  const base = ++invocation * 10_000_000
  return runJson(process.execPath, [join(BENCH_DIR, 'lib/cannon.mjs'), JSON.stringify({ port, scenario, duration, warmup, connections, base, socketPath })],
    { timeoutMs: (duration + warmup + 60) * 1000 })
}

/** Like cannon, plus the server's CPU time per round trip (µs, user + system, all threads; warm-up included). */
async function measured (server, scenario, opts) {
  const before = cpuMs(server.pid)
  const r = await cannon(server.port, scenario, opts)
  const iterations = r.itersPerSec * r.seconds * (1 + opts.warmup / opts.duration)
  return { ...r, cpuUsPerIter: (cpuMs(server.pid) - before) * 1000 / iterations }
}

const summary = (list) => ({
  reqPerSec: median(list.map((r) => r.reqPerSec)),
  pairsPerSec: median(list.map((r) => r.itersPerSec)),
  p50: median(list.map((r) => r.p50)),
  p99: median(list.map((r) => r.p99)),
  createP50Us: median(list.map((r) => r.createP50Us)),
  createP99Us: median(list.map((r) => r.createP99Us)),
  cpuUsPerIter: median(list.map((r) => r.cpuUsPerIter)),
  failures: list.reduce((n, r) => n + r.errors + r.non2xx + r.timeouts, 0),
  runs: list.length
})

/** The median of per-repetition ratios, each against the baseline run next to it. */
const ratio = (a, b, f) => median(a.map((r, i) => f(r) / f(b[i])))

/** The kernel's part of a pair as the service spends it under this load (lib/in-situ.mjs), per pair. */
async function kernelInSitu ({ duration, warmup }) {
  const svc = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'in-situ', defaultStateDir: true, script: inSituBuild() })
  let r
  let pairs
  try {
    r = await cannon(svc.port, 'service-pair', { duration, warmup })
    // The counters run from the start, warm-up included: the pairs are counted by the service's own histogram.
    const text = (await request(svc.port, 'GET', '/metrics')).body.toString()
    pairs = Number(/^tensorshm_http_request_duration_seconds_count\{[^}]*method="DELETE"[^}]*route="\/v1\/segments\/:name"[^}]*status_code="204"[^}]*\} (\d+)/m.exec(text)?.[1] ?? NaN)
  } finally {
    await svc.stop()
  }
  const by = inSituFigures(readFileSync(svc.logFile, 'utf8'))
  const perPair = Object.fromEntries(Object.entries(by).map(([k, v]) => [k, { calls: v.calls / pairs, us: v.us / pairs }]))
  return { usPerPair: Object.values(perPair).reduce((n, v) => n + v.us, 0), perPair, pairsPerSec: r.itersPerSec }
}

export async function runControlPlane ({ reps = 4, duration = 10, warmup = 2, batch = { iters: 100, warmup: 100 }, log = () => {} } = {}) {
  const svc = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'control', defaultStateDir: true })
  const bare = await startServer('bare-segments.mjs')
  const runs = { service: [], bare: [] }
  try {
    const plan = [['service', svc], ['bare', bare]]
    for (let i = 0; i < reps; i++) {
      for (const [key, server] of i % 2 === 0 ? plan : [...plan].reverse()) {
        const r = await measured(server, 'service-pair', { duration, warmup })
        runs[key].push(r)
        log(`  ${key.padEnd(8)} ${r.itersPerSec.toFixed(0)} pairs/s, create p50 ${r.createP50Us.toFixed(0)} µs p99 ${r.createP99Us.toFixed(0)} µs, server CPU ${r.cpuUsPerIter.toFixed(0)} µs/pair, errors ${r.errors + r.non2xx + r.timeouts}`)
      }
    }
  } finally {
    await svc.stop()
    await bare.stop()
  }
  const echo = await startServer('echo-fastify.mjs')
  let echo64k
  try {
    echo64k = await measured(echo, 'echo64k', { duration, warmup })
  } finally {
    await echo.stop()
  }
  const floor = await runJson(process.execPath, [join(BENCH_DIR, 'lib/floor.mjs'), JSON.stringify({ prefix: `${svc.prefix}floor_`, n: 1000, blocks: 5 })])
  log(`  floor: the kernel's part of a pair ${floor.pooledPair.toFixed(1)} µs; one 64 KiB tensor made fresh ${floor.freshCreate.toFixed(1)} µs, taken from the pool ${floor.pooledCreate.toFixed(1)} µs`)
  const inSitu = await kernelInSitu({ duration, warmup })
  log(`  in the service under this load: ${inSitu.usPerPair.toFixed(1)} µs per pair in libc calls and zeroing (${Object.entries(inSitu.perPair).filter(([, v]) => v.calls >= 0.01).map(([k, v]) => `${k} ${v.calls.toFixed(2)}x ${v.us.toFixed(1)} µs`).join(', ')})`)
  const many = await runBatch(batch)
  log(`  64 tensors in one request: ${many.fresh.median.toFixed(1)} µs per fresh tensor (floor between the requests ${many.fresh.floor.toFixed(1)}, in a hot loop of its own ${many.hotLoop.freshCreate.toFixed(1)}), ${many.pooled.median.toFixed(1)} µs per pooled one (floor ${many.pooled.floor.toFixed(1)}); the bare app answering the same request ${many.bare.median.toFixed(1)} µs per tensor; back to back ${many.backToBack.median.toFixed(1)} µs (floor ${many.backToBack.floor.toFixed(1)}, bare ${many.bareBackToBack.median.toFixed(1)})`)
  return {
    service: summary(runs.service),
    bare: summary(runs.bare),
    echo64k: summary([echo64k]),
    floor,
    inSitu,
    many,
    ratios: {
      pairsPerSec: ratio(runs.service, runs.bare, (r) => r.itersPerSec),
      cpuPerPair: ratio(runs.service, runs.bare, (r) => r.cpuUsPerIter),
      createP99: ratio(runs.service, runs.bare, (r) => r.createP99Us),
      perTensor: many.ratioFresh,
      perPooledTensor: many.ratioPooled
    },
    settings: { reps, duration, warmup, connections: 16 }
  }
}
