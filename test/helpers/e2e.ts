// Helpers for the end-to-end suites that drive real third-party programs (Chromium, Prometheus) against the
// compiled service: finding the program, free loopback ports, temp dirs, and processes that are always killed,
// their whole process group, when the test ends. Starting the service and polling live in server.ts.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { root } from './server.js'

type Test = import('tap').Test

/** `name` when it is a path to an executable file, else the first executable `name` on PATH; undefined if none. */
export function which (name: string): string | undefined {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name))
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK)
      return statSync(c).isFile()
    } catch {
      return false
    }
  })
}

/** A directory of the test's own under the system temp dir, removed when the test ends. */
export function tempDir (t: Test, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tshm-${tag}-`))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) })
  return dir
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed). */
export async function freePort (): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      srv.close(() => { port > 0 ? resolve(port) : reject(new Error('no port from listen(0)')) })
    })
  })
}

/** Whether `promise` settles within `ms`; the timer does not outlive the wait. */
export async function within (promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([promise.then(() => true, () => true), late])
  } finally {
    clearTimeout(timer)
  }
}

export interface Proc {
  child: ChildProcess
  /** Its stdout and stderr so far (the last 256 KiB). */
  output: () => string
  /** Whether it is still running. */
  running: () => boolean
  /** Resolves with the exit code (or signal name, or the spawn error) once it is gone. */
  exited: Promise<number | string>
  /** SIGTERM to its process group, SIGKILL after `graceMs`; resolves with how it ended. Never throws. */
  stop: (graceMs?: number) => Promise<number | string>
}

const OUTPUT_LIMIT = 256 * 1024

function signalGroup (pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is gone already.
  }
}

/**
 * Spawns `command` in a process group of its own, stdout and stderr captured. It is stopped on the test's teardown
 * (and SIGKILLed, group and all, should the test process exit first).
 */
export function spawnProc (t: Test, command: string, args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(command, args, { cwd: options.cwd ?? root, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  const collect = (d: Buffer) => {
    out += d.toString()
    if (out.length > OUTPUT_LIMIT) out = out.slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let done = false
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => { done = true; resolve(code ?? signal ?? 'unknown') })
    child.once('error', (err) => { done = true; resolve(`spawn error: ${err.message}`) })
  })
  const lastResort = () => { signalGroup(child.pid, 'SIGKILL') }
  process.once('exit', lastResort)

  const stop = async (graceMs = 5_000): Promise<number | string> => {
    if (!done) {
      signalGroup(child.pid, 'SIGTERM')
      if (!await within(exited, graceMs)) {
        signalGroup(child.pid, 'SIGKILL')
        await within(exited, 5_000)
      }
    }
    // Whatever of the group outlived its leader (a browser's helpers, say) goes too.
    signalGroup(child.pid, 'SIGKILL')
    process.removeListener('exit', lastResort)
    return done ? await exited : 'still running after SIGKILL'
  }
  t.teardown(async () => { await stop() })
  return { child, output: () => out, running: () => !done, exited, stop }
}

/** A JSON call to the service: status and parsed body (`{}` for a 204). */
export async function api (base: string, method: string, path: string, body?: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await fetch(base + path, {
    method,
    signal: AbortSignal.timeout(10_000),
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}
