import { readFileSync } from 'node:fs'
import * as libc from './libc.js'

/** A pidfd for `pid` as it is now (pidfd_open); ESRCH when no such process exists. The caller closes it. */
export function pidfdOpen (pid: number): number {
  return libc.checked('pidfd_open', libc.pidfd_open(pid, 0))
}

/**
 * When the process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined when
 * there is no such process. A pid and its start time name one process for the life of the machine.
 */
export function startTime (pid: number): number | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces and ')': count fields after the last one.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const value = Number(fields[19])
  return Number.isSafeInteger(value) ? value : undefined
}

/**
 * Which of these pidfds belong to processes that have exited: one poll() with a zero timeout, so it never waits.
 * An fd that is not a pidfd any more (POLLNVAL) counts as exited.
 */
export function exited (pidfds: number[]): Set<number> {
  const out = new Set<number>()
  if (pidfds.length === 0) return out
  const buf = Buffer.alloc(pidfds.length * 8)
  for (const [i, fd] of pidfds.entries()) { buf.writeInt32LE(fd, i * 8); buf.writeInt16LE(libc.POLLIN, i * 8 + 4) }
  const n = libc.checked('poll', libc.poll(buf, pidfds.length, 0))
  if (n === 0) return out
  for (const [i, fd] of pidfds.entries()) if (buf.readInt16LE(i * 8 + 6) !== 0) out.add(fd)
  return out
}
