/**
 * Starting the compiled service as production does (`node dist/src/server.js`), for the tests and the benchmarks
 * alike: wait until it listens, keep its output, stop it. Compiled with the service, so that `bench/` (plain
 * JavaScript) imports it from dist/ and the tests from here.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** The repository's root directory, with a trailing slash. */
export const root = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../..' : '../..', import.meta.url))

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Thrown by a poll probe to stop polling at once (a process died, say) instead of waiting for the deadline. */
export class GiveUp extends Error {
  override name = 'GiveUp'
}

/**
 * Calls `probe` until it returns a value, at most `timeoutMs` in all. A probe that throws is not ready yet, and its
 * last message is what the timeout error reports; a probe that throws GiveUp ends the polling with that error.
 */
export async function poll<T> (what: string, probe: () => Promise<T>, { timeoutMs = 30_000, intervalMs = 250 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last = 'never probed'
  for (;;) {
    try {
      return await probe()
    } catch (err) {
      if (err instanceof GiveUp) throw err
      last = err instanceof Error ? err.message : String(err)
    }
    if (Date.now() + intervalMs > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${last}`)
    await sleep(intervalMs)
  }
}

export interface Service {
  child: ChildProcess
  url: string
  port: number
  /** Its stdout and stderr so far (the last 1 MiB). */
  log: () => string
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  stop: (graceMs?: number) => Promise<number | string>
}

export interface StartOptions {
  /** Turns the command into another (nsenter into a sandbox, say); the process is still the service itself. */
  wrap?: (argv: string[]) => string[]
  /** Node's own flags, before the script (--cpu-prof, say). */
  nodeArgs?: string[]
  /** Another build of the service to run, relative to the root; dist/src/server.js unless said. */
  script?: string
  /** Where the output goes too, besides memory. */
  logFile?: string
  timeoutMs?: number
}

const LOG_LIMIT = 1 << 20

function launch (env: Record<string, string>, { wrap, nodeArgs = [], script = 'dist/src/server.js', logFile }: StartOptions) {
  const [bin, ...args] = (wrap ?? ((a) => a))([process.execPath, ...nodeArgs, script])
  // With a log file, the service writes to it directly, as a production log sink would take its stdout: a pipe
  // read into this process's heap would put the reader's CPU on the same cores as the service under measurement.
  const fd = logFile === undefined ? undefined : openSync(logFile, 'a')
  const child = spawn(bin as string, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', fd ?? 'pipe', fd ?? 'pipe'] })
  if (fd !== undefined) closeSync(fd)
  let out = ''
  const collect = (d: Buffer) => {
    out += d.toString()
    if (out.length > LOG_LIMIT) out = out.slice(-LOG_LIMIT)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const log = logFile === undefined ? () => out : () => tailOf(logFile)
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string)
  return { child, log, exited }
}

/** The last LOG_LIMIT bytes of a file. */
function tailOf (path: string): string {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    const buf = Buffer.alloc(Math.min(size, LOG_LIMIT))
    readSync(fd, buf, 0, buf.length, size - buf.length)
    return buf.toString()
  } finally {
    closeSync(fd)
  }
}

/**
 * Starts the service with `env` on top of this environment, on a free port (TENSORSHM_PORT=0 unless given), and
 * resolves once it answers /healthz.
 */
export async function startService (env: Record<string, string>, options: StartOptions = {}): Promise<Service> {
  const { child, log, exited } = launch({ TENSORSHM_PORT: '0', TENSORSHM_HOST: '127.0.0.1', ...env }, options)
  let done = false
  exited.then(() => { done = true }, () => {})
  // The port: the one asked for, or the one the log says it took (which needs the info level).
  const port = await poll('the service to listen', async () => {
    if (done) throw new GiveUp(`exited with ${await exited}: ${log()}`)
    const asked = Number(env.TENSORSHM_PORT ?? 0)
    const found = asked !== 0 ? asked : Number(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(log())?.[1] ?? NaN)
    if (!Number.isInteger(found)) throw new Error('no "listening" line yet')
    const res = await fetch(`http://127.0.0.1:${found}/healthz`, { signal: AbortSignal.timeout(2000) })
    if (res.status !== 200) throw new Error(`/healthz: ${res.status}`)
    return found
  }, { timeoutMs: options.timeoutMs ?? 20_000, intervalMs: 20 })
  const stop = async (graceMs = 15_000): Promise<number | string> => {
    if (!done) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
    return await exited
  }
  return { child, url: `http://127.0.0.1:${port}`, port, log, exited, stop }
}

/** Runs the service to completion (for starts that must fail): its exit code and output. */
export async function runService (env: Record<string, string>, options: StartOptions = {}): Promise<{ code: number | string, output: string }> {
  const { child, log, exited } = launch(env, options)
  // A start that should have failed and did not must not outlive the test: SIGKILL at the deadline.
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
  try {
    const code = await exited
    return { code, output: log() }
  } finally {
    clearTimeout(timer)
  }
}
