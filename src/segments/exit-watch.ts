import { close } from '../../native/shm.js'
import { exited, pidfdOpen, startTime } from '../../native/process.js'
import { isSysError } from '../../native/sys-error.js'
import type { Logger } from './logger.js'

/** One process for the life of the machine: a pid is reused, a pid with its start time is not. */
export interface ProcessRef { pid: number, start: number }

export const isProcessRef = (v: unknown): v is ProcessRef => {
  if (typeof v !== 'object' || v === null) return false
  const { pid, start } = v as Record<string, unknown>
  return typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 && typeof start === 'number' && Number.isSafeInteger(start) && start >= 0
}

interface Watched { fd: number, bound: Map<string, { owner: string, count: number }> }

/** How often the pidfds are polled (never waiting): a released namespace goes within this of its process. */
const INTERVAL_MS = 100

const keyOf = (ref: ProcessRef): string => `${ref.pid}:${ref.start}`

/**
 * release_on_exit: namespaces bound to the process that created them. Each process is watched through a pidfd
 * (which no reuse of its pid can confuse), all of them with one poll() of zero timeout on a timer, so the event
 * loop never waits. A binding lasts while the namespace has segments created with it; the pidfd is closed with
 * the last one.
 */
export class ExitWatch {
  readonly #watched = new Map<string, Watched>()
  #timer: NodeJS.Timeout | undefined

  constructor (private readonly onExit: (namespace: string, owner: string) => void, private readonly log: Logger) {}

  /**
   * The process behind `pidfd` (the caller's connection) as a ProcessRef, or undefined when it has exited already.
   * Reading /proc/<pid>/stat and then finding the pidfd still open proves the start time read was that process's.
   */
  identify (pidfd: number, pid: number): ProcessRef | undefined {
    const start = startTime(pid)
    if (start === undefined || exited([pidfd]).size > 0) return undefined
    return { pid, start }
  }

  /** Binds `count` segments of `namespace` to a process, keeping `pidfd` (or closing it if one is kept already). */
  bind (ref: ProcessRef, pidfd: number | undefined, namespace: string, owner: string, count: number): void {
    let w = this.#watched.get(keyOf(ref))
    if (w === undefined) {
      if (pidfd === undefined) throw new Error('a process is watched through a pidfd')
      this.#watched.set(keyOf(ref), w = { fd: pidfd, bound: new Map() })
    } else if (pidfd !== undefined) close(pidfd)
    const b = w.bound.get(namespace)
    if (b === undefined) w.bound.set(namespace, { owner, count })
    else b.count += count
    this.#timer ??= setInterval(() => { this.check() }, INTERVAL_MS).unref()
  }

  /** A bound segment left by another way (released, expired, vanished). */
  unbind (ref: ProcessRef, namespace: string): void {
    const w = this.#watched.get(keyOf(ref))
    const b = w?.bound.get(namespace)
    if (w === undefined || b === undefined) return
    if (--b.count > 0) return
    w.bound.delete(namespace)
    if (w.bound.size === 0) this.#drop(keyOf(ref), w)
  }

  /**
   * After a restart: one journaled binding back, its process found again by pid and start time. False when that
   * process is gone (it exited while the service was down; its pid may be someone else's now).
   */
  restore (ref: ProcessRef, namespace: string, owner: string): boolean {
    if (this.#watched.has(keyOf(ref))) { this.bind(ref, undefined, namespace, owner, 1); return true }
    let fd: number
    try {
      fd = pidfdOpen(ref.pid)
    } catch (err) {
      if (isSysError(err, 'ESRCH')) return false
      throw err
    }
    if (startTime(ref.pid) !== ref.start || exited([fd]).size > 0) { close(fd); return false }
    this.bind(ref, fd, namespace, owner, 1)
    return true
  }

  /** Polls every pidfd once; the namespaces of processes that exited are handed to `onExit`. */
  check (): void {
    const byFd = new Map([...this.#watched].map(([key, w]) => [w.fd, key]))
    let gone: Set<number>
    try {
      gone = exited([...byFd.keys()])
    } catch (err) {
      this.log.warn({ err }, 'could not poll the processes bound by release_on_exit; trying again')
      return
    }
    for (const fd of gone) {
      const key = byFd.get(fd) as string
      const w = this.#watched.get(key) as Watched
      this.#drop(key, w)
      for (const [namespace, { owner }] of w.bound) this.onExit(namespace, owner)
    }
  }

  get size (): number { return this.#watched.size }

  close (): void {
    for (const [key, w] of [...this.#watched]) this.#drop(key, w)
  }

  #drop (key: string, w: Watched): void {
    this.#watched.delete(key)
    close(w.fd)
    if (this.#watched.size === 0 && this.#timer !== undefined) { clearInterval(this.#timer); this.#timer = undefined }
  }
}
