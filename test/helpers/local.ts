// Callers on the Unix socket as real local users: the Python client in test/fixtures/local, run with runuser.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { root } from './server.js'
import type { User } from './sandbox.js'

type Test = import('tap').Test

/** A directory for sockets that test users may enter (0755, root's, in sticky /tmp), removed afterwards. */
export function socketDir (t: Test): string {
  const dir = mkdtempSync('/tmp/tshm-sock-')
  chmodSync(dir, 0o755)
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

const CLIENT = `${root}test/fixtures/local/client.py`
const argv = (user: User, socket: string, steps: object[]) => ['-u', user.name, '--', 'python3', CLIENT, socket, ...steps.map((s) => JSON.stringify(s))]

export interface Answer { status: number, body: unknown }
export const req = (method: string, url: string, body?: object | null, headers?: Record<string, string>): object =>
  ({ req: headers !== undefined ? [method, url, body ?? null, headers] : body === undefined || body === null ? [method, url] : [method, url, body] })

/** Runs the steps as `user` in one process (one connection) and returns each step's result. */
export function as<T = Answer> (user: User, socket: string, ...steps: object[]): T[] {
  const out = execFileSync('runuser', argv(user, socket, steps), { cwd: '/', timeout: 30_000 }).toString()
  return out.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T)
}

export interface Holder { child: ChildProcess, pid: number, results: Answer[], exit: () => Promise<void> }

/** Runs the steps as `user` and keeps the process alive (a `wait` step) until `exit`; killed on teardown. */
export async function holding (t: Test, user: User, socket: string, ...steps: object[]): Promise<Holder> {
  const child = spawn('runuser', argv(user, socket, [...steps, { wait: true }]), { cwd: '/', stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  t.teardown(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited } })
  const results: Answer[] = []
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  for await (const line of lines) {
    const parsed = JSON.parse(line) as Answer & { pid?: number }
    if (parsed.pid !== undefined) {
      lines.close()
      // runuser forks: the pid that connected is python's, which the client reports itself.
      return { child, pid: parsed.pid, results, exit: async () => { child.stdin?.end(); await exited } }
    }
    results.push(parsed)
  }
  throw new Error('the client exited before waiting')
}
