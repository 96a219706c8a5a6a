// Shared plumbing for the benchmarks: processes, ports, /proc sampling, statistics, cleanup.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startService as start } from '../../dist/scripts/lib/service.js'

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)))
export const ROOT = dirname(BENCH_DIR)
export const SHM = '/dev/shm'
export const MiB = 2 ** 20
export const GiB = 2 ** 30

/** One prefix per `npm run bench`: every file this run puts in /dev/shm starts with it, so the final check is exact. */
export const RUN_PREFIX = `tshmbench_${process.pid}_${randomBytes(3).toString('hex')}_`
/** Scratch space for service logs, state dirs and profiles: outside /dev/shm, removed at the end. */
export const WORK = mkdtempSync(join(tmpdir(), 'tshm-bench-'))

const children = new Set()
let serviceCount = 0

// ------------------------------------------------------------------------------------------------ statistics

export function quantile (values, q) {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
}
export const median = (values) => quantile(values, 0.5)
export const p90 = (values) => quantile(values, 0.9)
export const p99 = (values) => quantile(values, 0.99)
export const max = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity)
export const round = (x, digits = 2) => Number.isFinite(x) ? Number(x.toFixed(digits)) : x
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/** Absolute time in ms with sub-ms resolution, comparable across processes on this host. */
export const nowEpoch = () => performance.timeOrigin + performance.now()

// ------------------------------------------------------------------------------------------------ processes

export async function freePort () {
  const srv = net.createServer()
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address()
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/** Spawns a child that the final cleanup kills if it is still alive; stdout/stderr go to a log file. */
export function spawnTracked (cmd, args, { env = {}, log, stdio } = {}) {
  const logFile = log ?? join(WORK, `${cmd.replace(/\W/g, '')}-${children.size}-${Date.now()}.log`)
  const fd = openSync(logFile, 'a')
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: stdio ?? ['ignore', fd, fd] })
  child.logFile = logFile
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => { children.delete(child); resolve({ code, signal }) }))
  children.add(child)
  return child
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopChild (child, graceMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  const result = await child.exited
  clearTimeout(timer)
  return result
}

/** Runs a command to completion and returns its stdout (stderr is kept for the error message). */
export function run (cmd, args, { env = {}, input, timeoutMs = 600_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    children.add(child)
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { err += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (code === 0) resolve(out)
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${err.slice(-2000)}`))
    })
    child.stdin.end(input ?? '')
  })
}

export async function runJson (cmd, args, opts) {
  const out = await run(cmd, args, opts)
  return JSON.parse(out.trim().split('\n').pop())
}

// ------------------------------------------------------------------------------------------------ HTTP

export const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

/** One request; the body is read and returned as a Buffer (small answers only). */
export function request (port, method, path, { body, headers = {}, agent: a = agent } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body))
    const h = { ...headers }
    if (data !== undefined) {
      h['content-length'] = data.length
      h['content-type'] ??= 'application/json'
    }
    const t0 = performance.now()
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: a }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(data)
  })
}

export async function json (port, method, path, body, expect) {
  const res = await request(port, method, path, { body })
  if (expect !== undefined && res.status !== expect) throw new Error(`${method} ${path}: ${res.status} ${res.body.toString().slice(0, 300)}`)
  return res.body.length > 0 ? JSON.parse(res.body.toString()) : null
}

export async function waitHealthy (port, child, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`process exited ${child.exitCode} before it answered; log: ${tail(child.logFile)}`)
    try {
      const res = await request(port, 'GET', '/healthz', { agent: false })
      if (res.status === 200) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`port ${port} did not answer /healthz in ${timeoutMs} ms; log: ${tail(child?.logFile)}`)
    await sleep(50)
  }
}

function tail (file) {
  try { return readFileSync(file, 'utf8').slice(-2000) } catch { return '(no log)' }
}

// ------------------------------------------------------------------------------------------------ the service

/**
 * The service as production runs it (scripts/lib/service.ts, shared with the tests), on a free loopback port, with
 * this run's segment prefix (plus a per-instance part) and a state dir of its own under WORK (or, with
 * `defaultStateDir`, where production keeps it: on /dev/shm). `env` overrides; `nodeArgs` go before the script.
 */
export async function startService (env = {}, { nodeArgs = [], label = 'svc', script, defaultStateDir = false } = {}) {
  const n = ++serviceCount
  const prefix = `${RUN_PREFIX}${n}_`
  const logFile = join(WORK, `service-${n}-${label}.log`)
  const svc = await start({
    TENSORSHM_PORT: String(await freePort()),
    TENSORSHM_SEGMENT_PREFIX: prefix,
    ...(defaultStateDir ? {} : { TENSORSHM_STATE_DIR: mkdtempSync(join(WORK, `state-${n}-`)) }),
    TENSORSHM_LOG_LEVEL: 'warn',
    ...env
  }, { nodeArgs, script, logFile })
  const child = Object.assign(svc.child, { exited: svc.exited.then((code) => ({ code })) })
  children.add(child)
  svc.exited.then(() => children.delete(child), () => {})
  return { child, port: svc.port, pid: child.pid, prefix, label, logFile, stop: () => svc.stop() }
}

/** A bench server script (bench/servers/*.mjs) on a free port; it answers /healthz. */
export async function startServer (script, args = [], { nodeArgs = [] } = {}) {
  const port = await freePort()
  const child = spawnTracked(process.execPath, [...nodeArgs, join(BENCH_DIR, 'servers', script), String(port), ...args])
  await waitHealthy(port, child)
  return { child, port, pid: child.pid, stop: () => stopChild(child) }
}

// ------------------------------------------------------------------------------------------------ /proc

export function procStatus (pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** CPU time (user + system, all threads) of a process so far, in ms. */
export function cpuMs (pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) * 10 // clock ticks of 10 ms (USER_HZ = 100 on Linux)
}

/** Resets VmHWM to the current RSS (clear_refs 5, Linux >= 4.0); false if not permitted. */
export function resetPeak (pid) {
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

/** Samples VmRSS every `everyMs` until stopped; returns {before, peak (max of samples and VmHWM), samples}. */
export function rssSampler (pid, everyMs = 5) {
  const hwmReset = resetPeak(pid)
  const before = procStatus(pid).rss
  let peak = before
  let samples = 0
  const timer = setInterval(() => {
    try { peak = Math.max(peak, procStatus(pid).rss); samples++ } catch {}
  }, everyMs)
  return {
    stop () {
      clearInterval(timer)
      const s = procStatus(pid)
      if (hwmReset) peak = Math.max(peak, s.hwm)
      return { before, peak, after: s.rss, growth: peak - before, samples, hwmReset }
    }
  }
}

// ------------------------------------------------------------------------------------------------ cleanup

/** Where a service keeps its journal by default (src/config.ts), under which a run's state dirs are named by prefix. */
const DEFAULT_STATE_PARENT = `.tensorshm-${process.getuid()}`

export function shmLeftovers () {
  const top = readdirSync(SHM).filter((n) => n.startsWith(RUN_PREFIX))
  let state = []
  try { state = readdirSync(join(SHM, DEFAULT_STATE_PARENT)).filter((n) => n.startsWith(RUN_PREFIX)).map((n) => join(DEFAULT_STATE_PARENT, n)) } catch {}
  return [...top, ...state]
}

export function shmFile (suffix) {
  return join(SHM, `${RUN_PREFIX}${suffix}`)
}

/** Stops every child still alive, then removes this run's files; returns what had been left in /dev/shm. */
export async function cleanup () {
  await Promise.all([...children].map((c) => stopChild(c, 5000)))
  const left = shmLeftovers()
  for (const n of left) { try { rmSync(join(SHM, n), { recursive: true, force: true }) } catch {} }
  if (existsSync(WORK) && process.env.TSHM_BENCH_KEEP_WORK === undefined) rmSync(WORK, { recursive: true, force: true })
  return left
}

/** Writes a `size`-byte file of non-zero bytes without holding it in memory. */
export function writeFilledFile (path, size) {
  const fd = openSync(path, 'w', 0o600)
  const chunk = Buffer.alloc(8 * MiB)
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff
  try {
    for (let at = 0; at < size; at += chunk.length) writeSyncAll(fd, chunk.subarray(0, Math.min(chunk.length, size - at)), at)
  } finally {
    closeSync(fd)
  }
}

function writeSyncAll (fd, buf, pos) {
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, pos + off)
}
