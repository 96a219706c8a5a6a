// `npm run bench`: every benchmark of bench/README.md in one run on this machine, each as a ratio against a
// baseline measured side by side in the same run, then the profiling passes; prints a table with pass/fail
// against each target and leaves nothing behind (every process stopped, nothing of this run in /dev/shm).
//
//   node bench/run.mjs [--quick] [--only=1,2,3,4,5,6,profile] [--write-results] [--strict]
//
// --quick          shorter runs, for trying the harness (figures are then not worth reporting)
// --only           a subset (the table lists only those)
// --write-results  also rewrite the generated block of bench/RESULTS.md with this run's figures
// --strict         exit 1 when a target is missed (default: exit 1 only on errors or leftovers)
import { execSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { runAlloc } from './alloc.mjs'
import { runControlPlane } from './control-plane.mjs'
import { runDataPlane } from './data-plane.mjs'
import { runHandoff } from './handoff.mjs'
import { runLocalSocket } from './local-socket.mjs'
import { BENCH_DIR, cleanup, ROOT, RUN_PREFIX } from './lib/common.mjs'
import { formatSummary } from './lib/cpuprofile.mjs'
import { runProfiles } from './profile.mjs'
import { runResponsiveness } from './responsiveness.mjs'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = new Set((args.find((a) => a.startsWith('--only='))?.slice(7) ?? '1,2,3,4,5,6,profile').split(','))
const started = Date.now()
const log = (...a) => console.log(...a)
const WATCHDOG_MS = 20 * 60_000

function sh (cmd) {
  try { return execSync(cmd, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd() } catch { return '(unavailable)' }
}

function machine () {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model
  return {
    date: new Date().toISOString(),
    nproc: sh('nproc'),
    cpu,
    free: sh('free -g'),
    uname: sh('uname -a'),
    node: process.version,
    python: sh('python3 -V'),
    numpy: sh('python3 -c "import numpy; print(numpy.__version__)"'),
    curl: sh('curl --version').split('\n')[0],
    autocannon: JSON.parse(readFileSync(join(ROOT, 'node_modules/autocannon/package.json'), 'utf8')).version,
    fastify: JSON.parse(readFileSync(join(ROOT, 'node_modules/fastify/package.json'), 'utf8')).version,
    shm: sh('df -h /dev/shm | tail -1'),
    shmemThp: sh('cat /sys/kernel/mm/transparent_hugepage/shmem_enabled'),
    commit: sh('git rev-parse --short HEAD') + (sh('git status --porcelain -- src routes native') === '' ? '' : ' (+ uncommitted changes in src/routes/native)')
  }
}

const fmt = (x, d = 0) => Number.isFinite(x) ? x.toFixed(d) : String(x)
const rows = []
function row (id, what, measured, baseline, ratio, target, pass) {
  rows.push({ id, what, measured, baseline, ratio, target, verdict: pass === null ? 'info' : pass ? 'PASS' : 'FAIL' })
}

function table (list) {
  const head = ['#', 'benchmark', 'measured', 'baseline', 'ratio', 'target', 'verdict']
  const cells = list.map((r) => [r.id, r.what, r.measured, r.baseline, r.ratio, r.target, r.verdict])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)))
  const line = (c) => '| ' + c.map((x, i) => String(x).padEnd(widths[i])).join(' | ') + ' |'
  return [line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...cells.map(line)].join('\n')
}

async function main () {
  const info = machine()
  const results = { machine: info, quick, prefix: RUN_PREFIX }
  log(`tensorshm benchmarks, ${info.date}: ${info.nproc} cores, node ${info.node}, ${info.python}, numpy ${info.numpy}, autocannon ${info.autocannon}${quick ? ' (QUICK: figures not for reporting)' : ''}`)
  log(`segment prefix of this run: ${RUN_PREFIX}*`)

  if (only.has('1')) {
    log('\n[1] control plane: POST+DELETE of a 64 KiB segment vs a bare Fastify app answering the same pair (autocannon, 16 connections)')
    const r = results.control = await runControlPlane(quick ? { reps: 1, duration: 3, warmup: 1, batch: { iters: 20, warmup: 3 }, log } : { reps: 4, log })
    const s = r.service
    const b = r.bare
    const x = r.ratios
    row('1', 'control plane: POST+DELETE pairs/s, service defaults', `${fmt(s.pairsPerSec)} pairs/s (${fmt(s.reqPerSec)} req/s)`, `bare ${fmt(b.pairsPerSec)} pairs/s`, fmt(x.pairsPerSec, 2), '>= 0.5', x.pairsPerSec >= 0.5 && s.failures === 0)
    row('1c', '  server CPU per pair (user+sys, all threads)', `${fmt(s.cpuUsPerIter)} µs`, `bare ${fmt(b.cpuUsPerIter)} µs`, fmt(x.cpuPerPair, 2), '<= 2', x.cpuPerPair <= 2)
    row('1p', '  create latency under that load, p99 (p50)', `${fmt(s.createP99Us)} µs (${fmt(s.createP50Us)})`, `bare ${fmt(b.createP99Us)} µs (${fmt(b.createP50Us)})`, fmt(x.createP99, 2), '<= 2', x.createP99 <= 2)
    const m = r.many
    row('1t', '  64 x 64 KiB in one request: CPU per tensor / floor', `${fmt(m.fresh.median, 1)} µs (p90 ${fmt(m.fresh.p90, 1)})`, `floor ${fmt(m.fresh.floor, 1)} µs (open, fstat, ftruncate, fallocate; 64 between requests)`, fmt(x.perTensor, 2), '<= 1.5', x.perTensor <= 1.5)
    row('1l', '    the same against the floor in a hot loop of its own', `${fmt(m.fresh.median, 1)} µs`, `floor ${fmt(m.hotLoop.freshCreate, 1)} µs (512 in a loop, before the service)`, fmt(m.ratioFreshHotLoop, 2), '(info)', null)
    row('1h', '    same request to the bare app: its HTTP share', `${fmt(m.bare.median, 1)} µs per tensor`, `floor ${fmt(m.fresh.floor, 1)} µs`, fmt((m.fresh.floor + m.bare.median) / m.fresh.floor, 2), '(info) floor+bare / floor', null)
    row('1b', '    same, back to back (no idle between requests)', `${fmt(m.backToBack.median, 1)} µs per tensor`, `floor ${fmt(m.backToBack.floor, 1)} µs, bare app ${fmt(m.bareBackToBack.median, 1)} µs`, fmt(m.backToBack.median / m.backToBack.floor, 2), '(info) of floor', null)
    row('1r', '    same, the 64 taken from the pool', `${fmt(m.pooled.median, 1)} µs (p90 ${fmt(m.pooled.p90, 1)})`, `floor ${fmt(m.pooled.floor, 1)} µs (fstat, rename)`, fmt(x.perPooledTensor, 2), '(info)', null)
    row('1f', '  floor: the kernel\'s part of a pair, no HTTP', `${fmt(r.floor.pooledPair, 1)} µs`, `service ${fmt(s.cpuUsPerIter)} µs, bare ${fmt(b.cpuUsPerIter)} µs`, fmt(r.floor.pooledPair / b.cpuUsPerIter, 2), '(info) of bare', null)
    row('1k', '  the same kernel part inside the service, under load', `${fmt(r.inSitu.usPerPair, 1)} µs`, `service ${fmt(s.cpuUsPerIter)} µs, bare ${fmt(b.cpuUsPerIter)} µs`, fmt((b.cpuUsPerIter + r.inSitu.usPerPair) / b.cpuUsPerIter, 2), '(info) bare+kernel / bare', null)
    row('1e', '  for information: bare Fastify echoing 64 KiB of JSON', `${fmt(r.echo64k.pairsPerSec)} echo/s, ${fmt(r.echo64k.cpuUsPerIter)} µs`, '-', '-', '(info)', null)
  }
  if (only.has('2')) {
    log('\n[2] data plane: 256 MiB GET/PUT .../data vs bare node:http + fs streams (curl; MB/s, RSS growth)')
    const r = results.data = await runDataPlane(quick ? { reps: 2, log } : { reps: 5, log })
    for (const m of ['GET', 'PUT']) {
      const x = r[m]
      row(`2${m === 'GET' ? 'a' : 'b'}`, `data plane: ${m} 256 MiB throughput`, `${fmt(x.serviceMBps)} MB/s`, `${fmt(x.baselineMBps)} MB/s`, fmt(x.medianPairRatio, 2), '>= 0.8', x.medianPairRatio >= 0.8)
      row(`2${m === 'GET' ? 'a' : 'b'}m`, `  ${m}: service RSS growth, peak - before (max of reps)`, `${fmt(x.serviceRssGrowthMaxMiB, 1)} MiB`, `bare ${fmt(x.baselineRssGrowthMaxMiB, 1)} MiB`, '-', '< 64 MiB', x.serviceRssGrowthMaxMiB < 64)
    }
    row('2c', '  RSS growth from first byte moved (incl. warm-up)', `${fmt(r.coldRssGrowthMiB, 1)} MiB (RSS ${fmt(r.rssAtStartMiB)} -> peak ${fmt(r.rssPeakMiB)} MiB)`, '-', '-', '< 64 MiB', r.coldRssGrowthMiB < 64)
  }
  if (only.has('3')) {
    log('\n[3] handoff of one 2880x1620x3 uint8 image between two Python processes: by reference and zero copy vs by value')
    const r = results.handoff = await runHandoff(quick ? { iters: 15, warmup: 3 } : { iters: 50, warmup: 10 })
    row('3', 'handoff 2880x1620x3 u8: by value / by reference', `ref ${fmt(r.ref.median, 1)} ms (p90 ${fmt(r.ref.p90, 1)})`, `value ${fmt(r.value.median, 1)} ms (p90 ${fmt(r.value.p90, 1)})`, `${fmt(r.speedup, 2)}x`, '>= 5x', r.speedup >= 5)
    row('3p', '  same at p90', `ref ${fmt(r.ref.p90, 1)} ms`, `value ${fmt(r.value.p90, 1)} ms`, `${fmt(r.speedupP90, 2)}x`, '(info)', null)
    row('3z', 'handoff zero copy (allocate, fill in place, read the view) vs by value', `zero ${fmt(r.zero.median, 2)} ms (p90 ${fmt(r.zero.p90, 2)})`, `value ${fmt(r.value.median, 1)} ms (p90 ${fmt(r.value.p90, 1)})`, `${fmt(r.zeroSpeedup, 2)}x`, '>= 20x', r.zeroSpeedup >= 20)
    row('3zp', '  same at p90', `zero ${fmt(r.zero.p90, 2)} ms`, `value ${fmt(r.value.p90, 1)} ms`, `${fmt(r.zeroSpeedupP90, 2)}x`, '(info)', null)
    row('3w', '  zero copy with the producer writing all 13.3 MiB in place', `${fmt(r.zeroFull.median, 2)} ms (p90 ${fmt(r.zeroFull.p90, 2)})`, `value ${fmt(r.value.median, 1)} ms`, `${fmt(r.zeroFullSpeedup, 2)}x`, '(info)', null)
  }
  if (only.has('4')) {
    log('\n[4] creation latency of a 2880x1620x3 uint8 segment: reserve + pool (defaults) vs ftruncate only')
    const r = results.alloc = await runAlloc(quick ? { iters: 50, warmup: 10, thinkIters: 15 } : {})
    const t = r.tight
    row('4', 'create 13.3 MiB, back to back: pooled / ftruncate', `${fmt(t.pooled.median, 2)} ms (p99 ${fmt(t.pooled.p99, 2)})`, `${fmt(t.ftruncate.median, 2)} ms (p99 ${fmt(t.ftruncate.p99, 2)})`, fmt(r.ratio, 2), '<= 1.5', r.ratio <= 1.5)
    row('4t', `  same with ${r.thinkMs} ms of client work between release and create`, `${fmt(r.think.pooled.median, 2)} ms (p99 ${fmt(r.think.pooled.p99, 2)})`, `${fmt(r.think.ftruncate.median, 2)} ms (p99 ${fmt(r.think.ftruncate.p99, 2)})`, fmt(r.thinkRatio, 2), '(info)', null)
    row('4z', '  floor: zeroing 13.3 MiB for reuse (pwrite), vs pooled - ftruncate', `${fmt(r.zeroMs, 2)} ms`, `${fmt(t.pooled.median - t.ftruncate.median, 2)} ms`, '-', '(info)', null)
    row('4f', '  what ftruncate defers: first write of 13.3 MiB, sparse vs recycled pages', `${fmt(r.firstWriteSparseMs, 2)} ms`, `${fmt(r.firstWriteBackedMs, 2)} ms`, fmt(r.firstWriteSparseMs / r.firstWriteBackedMs, 2), '(info)', null)
    const endToEnd = (t.pooled.median + r.firstWriteBackedMs) / (t.ftruncate.median + r.firstWriteSparseMs)
    row('4w', '  create + first write of the tensor: pooled / ftruncate', `${fmt(t.pooled.median + r.firstWriteBackedMs, 2)} ms`, `${fmt(t.ftruncate.median + r.firstWriteSparseMs, 2)} ms`, fmt(endToEnd, 2), '(info)', null)
    row('4c', '  cold: reserve on, pool off (posix_fallocate)', `${fmt(t.cold.median, 2)} ms (p99 ${fmt(t.cold.p99, 2)})`, `${fmt(t.ftruncate.median, 2)} ms`, fmt(t.cold.median / t.ftruncate.median, 2), `(info) ${fmt(r.coldMsPerMiB, 3)} ms/MiB`, null)
  }
  if (only.has('5')) {
    log('\n[5] /healthz every 5 ms from another process during 1 GiB operations')
    const r = results.responsiveness = await runResponsiveness(quick ? { reps: 1 } : { reps: 3 })
    const idle = r.ops.idle
    const base = { alloc: idle, put: r.ops.barePut, get: r.ops.bareGet, release: idle }
    for (const [op, label, target] of [['alloc', 'POST 1 GiB (reserve on, pool empty)', true], ['put', 'PUT .../data 1 GiB', true], ['get', 'GET .../data 1 GiB', true], ['release', 'DELETE 1 GiB', false]]) {
      const x = r.ops[op]
      const b = base[op]
      row(`5${op[0]}`, `${target ? '' : '  '}healthz during ${label}`, `p50 ${fmt(x.p50, 1)} / p99 ${fmt(x.p99, 1)} / max ${fmt(x.max, 1)} ms, ${x.samples} samples in ${fmt(x.opMsMedian)} ms op`,
        `${b === idle ? 'idle' : 'bare server, same op'}: p99 ${fmt(b.p99, 1)} / max ${fmt(b.max, 1)} ms (${b.samples})`, '-', target ? 'p99 < 20 ms' : '(info)', target ? x.p99 < 20 && x.samples >= 5 && x.failed === 0 : null)
    }
  }
  if (only.has('6')) {
    log('\n[6] the Unix socket (TENSORSHM_SOCKET) vs TCP loopback, one service, pool off: benchmark 1\'s pairs and benchmark 3\'s handoff')
    const r = results.localSocket = await runLocalSocket(quick ? { reps: 1, duration: 3, warmup: 1, iters: 10, handoffWarmup: 2, log } : { log })
    const { tcp, unix } = r.pairs
    row('6a', 'POST+DELETE pairs/s: Unix socket / TCP loopback', `${fmt(unix.pairsPerSec)} pairs/s (p50 ${unix.p50} ms, p99 ${unix.p99} ms)`, `${fmt(tcp.pairsPerSec)} pairs/s (p50 ${tcp.p50} ms, p99 ${tcp.p99} ms)`, fmt(r.pairs.ratio, 2), '(info)', tcp.failures + unix.failures === 0 ? null : false)
    for (const mode of ['ref', 'value']) {
      const [u, t] = [r.handoff.unix[mode], r.handoff.tcp[mode]]
      row(`6${mode === 'ref' ? 'b' : 'c'}`, `  handoff by ${mode === 'ref' ? 'reference' : 'value'}: Unix socket / TCP`, `${fmt(u.median, 1)} ms (p90 ${fmt(u.p90, 1)})`, `${fmt(t.median, 1)} ms (p90 ${fmt(t.p90, 1)})`, fmt(u.median / t.median, 2), '(info)', null)
    }
  }
  if (only.has('profile')) {
    log('\n[profile] node --cpu-prof of the service under benchmark 1 and 2 loads (and of the bare-Fastify pair)')
    results.profiles = await runProfiles({ duration: quick ? 3 : 6 })
  }

  const elapsed = (Date.now() - started) / 1000
  results.elapsedSeconds = elapsed
  results.rows = rows
  const leftovers = await cleanup()
  results.leftovers = leftovers
  const text = table(rows)
  log('\n' + text)
  if (results.profiles !== undefined) {
    for (const [k, v] of Object.entries(results.profiles)) log(`\nprofile ${k} ${JSON.stringify(v.load)}\n${formatSummary(v, 10)}`)
  }
  log(`\n${rows.filter((r) => r.verdict === 'PASS').length} passed, ${rows.filter((r) => r.verdict === 'FAIL').length} failed; ${fmt(elapsed)} s; /dev/shm leftovers of this run: ${leftovers.length === 0 ? 'none' : leftovers.join(', ')}`)

  const outDir = join(BENCH_DIR, 'out')
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'latest.json'), JSON.stringify(results, null, 2))
  const generated = generatedBlock(results, text)
  writeFileSync(join(outDir, 'latest.md'), generated)
  if (args.includes('--write-results')) writeResults(generated)
  if (leftovers.length > 0) process.exitCode = 1
  if (args.includes('--strict') && rows.some((r) => r.verdict === 'FAIL')) process.exitCode = 1
}

function generatedBlock (results, text) {
  const m = results.machine
  const lines = [
    `Run of ${m.date}${results.quick ? ' (--quick: not for reporting)' : ''}, ${fmt(results.elapsedSeconds)} s, commit ${m.commit}.`,
    '',
    '```',
    `nproc: ${m.nproc}   cpu: ${m.cpu}`,
    m.free,
    m.uname,
    `node ${m.node}, ${m.python}, numpy ${m.numpy}, fastify ${m.fastify}, autocannon ${m.autocannon}`,
    m.curl,
    `/dev/shm: ${m.shm}; shmem THP: ${m.shmemThp}`,
    '```',
    '',
    text,
    ''
  ]
  if (results.profiles !== undefined) {
    for (const [k, v] of Object.entries(results.profiles)) lines.push(`Profile \`${k}\` (${JSON.stringify(v.load)}):`, '', '```', formatSummary(v, 10), '```', '')
  }
  return lines.join('\n')
}

function writeResults (generated) {
  const file = join(BENCH_DIR, 'RESULTS.md')
  const begin = '<!-- BEGIN GENERATED: npm run bench -- --write-results -->'
  const end = '<!-- END GENERATED -->'
  let text
  try { text = readFileSync(file, 'utf8') } catch { text = `# Benchmark results\n\n${begin}\n${end}\n` }
  const a = text.indexOf(begin)
  const b = text.indexOf(end)
  if (a < 0 || b < a) text += `\n${begin}\n${end}\n`
  const i = text.indexOf(begin) + begin.length
  const j = text.indexOf(end)
  writeFileSync(file, text.slice(0, i) + '\n' + generated + text.slice(j))
}

async function abort (why) {
  console.error(`\nbench: ${why}; stopping everything this run started`)
  const left = await cleanup()
  if (left.length > 0) console.error(`removed from /dev/shm: ${left.join(', ')}`)
  process.exit(1)
}

process.on('SIGINT', () => { abort('interrupted') })
process.on('SIGTERM', () => { abort('terminated') })
const watchdog = setTimeout(() => { abort(`still running after ${WATCHDOG_MS / 60000} minutes`) }, WATCHDOG_MS)
watchdog.unref()
try {
  await main()
} catch (err) {
  console.error(err)
  await abort('a benchmark failed')
}
