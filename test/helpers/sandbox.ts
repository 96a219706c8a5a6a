// A private /dev/shm for destructive tests (a mount namespace of its own with a fresh tmpfs, so that nothing done
// there can reach the machine's), and a second local user to attack from. Both need root; suites skip without it.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { poll, root } from './server.js'

type Test = import('tap').Test

export const isRoot = (): boolean => process.geteuid?.() === 0

/** Why destructive suites cannot run here, or undefined when they can. */
export function sandboxUnavailable (): string | undefined {
  if (!isRoot()) return 'needs root (mount namespaces, a second user)'
  const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'true'])
  return probe.status === 0 ? undefined : `unshare -m is not available: ${probe.stderr.toString().trim()}`
}

export interface Sandbox {
  /** The sandbox's /dev/shm, as this process reaches it (through the holder's root in /proc). */
  shm: string
  files: (prefix: string) => string[]
  /** The argv that runs a command inside the sandbox, optionally as another user. */
  argv: (command: string[], user?: string) => string[]
  /** Runs a command inside the sandbox to completion; throws with its stderr when it fails. */
  run: (command: string[], user?: string) => string
}

/** A mount namespace with its own empty tmpfs on /dev/shm, held open by a waiting process until the test ends. */
export async function sandbox (t: Test, size = '256m'): Promise<Sandbox> {
  // The holder reads its stdin until EOF: if this process dies before its teardown, the namespace goes with it.
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${size},mode=1777 tmpfs /dev/shm && echo ready && exec cat >/dev/null`], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  holder.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const exited = once(holder, 'exit')
  t.teardown(async () => { holder.kill('SIGKILL'); await exited })
  await poll('the sandbox to mount its /dev/shm', async () => { if (!out.includes('ready')) throw new Error(out) }, { timeoutMs: 10_000, intervalMs: 20 })
  const pid = String(holder.pid)
  const shm = `/proc/${pid}/root/dev/shm`
  const argv = (command: string[], user?: string) => ['nsenter', '-t', pid, '-m', `--wd=${root}`, '--', ...(user === undefined ? [] : ['runuser', '-u', user, '--']), ...command]
  return {
    shm,
    files: (prefix) => readdirSync(shm).filter((f) => f.startsWith(prefix)).sort(),
    argv,
    run: (command, user) => {
      const [bin, ...args] = argv(command, user)
      return execFileSync(bin as string, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }).toString()
    }
  }
}

export interface User { name: string, uid: number, gid: number }

/** A local group of its own, removed when the test ends (after its members: teardowns run last first). */
export function localGroup (t: Test): { name: string, gid: number } {
  const name = `tshmg${randomBytes(4).toString('hex')}`
  execFileSync('groupadd', ['-r', name])
  t.teardown(() => { spawnSync('groupdel', [name]) })
  return { name, gid: Number(execFileSync('getent', ['group', name]).toString().split(':')[2]) }
}

/** A local user of its own, removed when the test ends: the other tenant of a shared host. */
export function localUser (t: Test, groups: string[] = []): User {
  const name = `tshm${randomBytes(4).toString('hex')}`
  execFileSync('useradd', ['-M', '-r', '-s', '/usr/sbin/nologin', ...(groups.length > 0 ? ['-G', groups.join(',')] : []), name])
  // Whatever still runs as the user (a loop a test started) goes with it: userdel refuses while it runs.
  t.teardown(() => { spawnSync('pkill', ['-KILL', '-u', name]); spawnSync('userdel', [name]) })
  const id = (flag: string) => Number(execFileSync('id', [flag, name]).toString().trim())
  return { name, uid: id('-u'), gid: id('-g') }
}
