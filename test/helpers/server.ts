import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface Running {
  child: ChildProcess
  url: string
  log: () => string
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string>
}

export interface SpawnOptions {
  /** Turns the command into another (nsenter into a sandbox, say); the process is still the service's own. */
  wrap?: (argv: string[]) => string[]
  timeoutMs?: number
}

const command = (wrap: SpawnOptions['wrap']): [string, string[]] => {
  const [bin, ...args] = (wrap ?? ((a) => a))([process.execPath, 'dist/src/server.js'])
  return [bin as string, args]
}

/** Starts the compiled service exactly as `npm start` runs it (node dist/src/server.js), on a free port. */
export async function startServer (env: Record<string, string>, { wrap, timeoutMs = 20_000 }: SpawnOptions = {}): Promise<Running> {
  const [bin, args] = command(wrap)
  const child = spawn(bin, args, {
    cwd: root,
    env: { ...process.env, TENSORSHM_PORT: '0', TENSORSHM_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string)
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line within ${timeoutMs} ms: ${out}`)), timeoutMs)
    const look = () => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m?.[1] !== undefined) { clearTimeout(timer); resolve(m[1]) }
    }
    child.stdout?.on('data', look)
    exited.then((code) => { clearTimeout(timer); reject(new Error(`exited with ${code}: ${out}`)) }, reject)
  })
  return { child, url, log: () => out, exited }
}

/** Runs the service to completion (for starts that must fail) and returns its exit code and output. */
export async function runServer (env: Record<string, string>, { wrap }: SpawnOptions = {}): Promise<{ code: number | string, output: string }> {
  const [bin, args] = command(wrap)
  const child = spawn(bin, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const [code, signal] = await once(child, 'exit')
  return { code: (code ?? signal) as number | string, output }
}
