// Benchmark 1: round trips per second of POST /v1/segments (one [65536] uint8 tensor, namespace bench/obj-<n>)
// followed by DELETE /v1/segments/{name} of the segment it created, against a bare Fastify 5 route echoing a
// 64 KiB JSON body, both driven by autocannon (16 connections, same duration, after a warm-up), alternating.
// For information: the same bare Fastify doing the service's exact request pair (small POST echo + DELETE),
// and the service at the default log level (info: pino writes two lines per request, here to a file).
import { join } from 'node:path'
import { BENCH_DIR, cpuMs, median, runJson, startServer, startService } from './lib/common.mjs'

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

export async function runControlPlane ({ reps = 3, duration = 10, warmup = 2, log = () => {} } = {}) {
  const svc = await startService({ TENSORSHM_LOG_LEVEL: 'warn' }, { label: 'control-warn' })
  const echo = await startServer('echo-fastify.mjs')
  const runs = { service: [], echo64k: [], echoPair: [], serviceInfo: [] }
  try {
    const plan = [['service', svc, 'service-pair'], ['echo64k', echo, 'echo64k'], ['echoPair', echo, 'echo-pair']]
    for (let i = 0; i < reps; i++) {
      for (const [key, server, scenario] of i % 2 === 0 ? plan : [...plan].reverse()) {
        const r = await measured(server, scenario, { duration, warmup })
        runs[key].push(r)
        log(`  ${key.padEnd(8)} ${r.reqPerSec.toFixed(0)} req/s, ${r.itersPerSec.toFixed(0)} round trips/s, p50 ${r.p50} ms, p99 ${r.p99} ms, server CPU ${r.cpuUsPerIter.toFixed(0)} µs/round trip, errors ${r.errors + r.non2xx + r.timeouts}`)
      }
    }
  } finally {
    await svc.stop()
  }
  // The default level, once, for transparency (the logs go to a file, as with a journald or file sink).
  const info = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'control-info' })
  try {
    const r = await measured(info, 'service-pair', { duration, warmup })
    runs.serviceInfo.push(r)
    // A bare-Fastify run right after, so the info figure has a same-time baseline too.
    runs.echo64k.push(await measured(echo, 'echo64k', { duration, warmup }))
    log(`  info     ${r.reqPerSec.toFixed(0)} req/s, ${r.itersPerSec.toFixed(0)} round trips/s, p50 ${r.p50} ms, p99 ${r.p99} ms`)
  } finally {
    await info.stop()
    await echo.stop()
  }
  const sum = (list) => ({
    reqPerSec: median(list.map((r) => r.reqPerSec)),
    pairsPerSec: median(list.map((r) => r.itersPerSec)),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpuUsPerIter: median(list.map((r) => r.cpuUsPerIter)),
    failures: list.reduce((n, r) => n + r.errors + r.non2xx + r.timeouts, 0),
    runs: list.length
  })
  const out = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, sum(v)]))
  // Per-repetition ratios (each against the baseline run next to it), then their median.
  out.ratio = median(runs.service.map((r, i) => r.itersPerSec / runs.echo64k[i].itersPerSec))
  out.ratioVsPair = median(runs.service.map((r, i) => r.itersPerSec / runs.echoPair[i].itersPerSec))
  out.ratioInfo = runs.serviceInfo[0].itersPerSec / runs.echo64k[runs.echo64k.length - 1].itersPerSec
  out.settings = { reps, duration, warmup, connections: 16 }
  return out
}
