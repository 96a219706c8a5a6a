import type { FastifyBaseLogger } from 'fastify'
import { zeroFill } from '../../native/io.js'
import * as shm from '../../native/shm.js'
import { newSegmentName } from './names.js'
import { namespaceRoot } from './namespace.js'
import type { Reaper } from './reaper.js'
import type { SegmentRecord } from './registry.js'

export interface PoolEntry extends shm.Identity { name: string, size: number, key: string }

interface Pooled extends PoolEntry {
  since: number
  /** Resolves true once the file is all zeros; false if it could not be zeroed (it is then dropped). */
  ready: Promise<boolean>
}

export interface PoolJournal {
  pooled: (entries: PoolEntry[]) => void
  unpooled: (names: string[]) => void
}

/**
 * Released segments kept for the next allocation of the same size by the same client, because a fresh segment
 * costs its pages (posix_fallocate, or page faults in the writer) and a recycled one does not. A kept segment is
 * renamed away from the name clients knew, zeroed before reuse, and only ever reused by the same key and the
 * same namespace root (`<client_id>`), so no data crosses from one client to another.
 */
export class SegmentPool {
  readonly #lists = new Map<string, Pooled[]>()
  #bytes = 0
  #count = 0
  hits = 0
  misses = 0

  constructor (private readonly maxBytes: number, private readonly idleMs: number, private readonly prefix: string,
    private readonly log: FastifyBaseLogger, private readonly reaper: Reaper, private readonly journal?: PoolJournal) {}

  static key (owner: string | null, namespace: string, size: number): string {
    return `${owner ?? ''}\0${namespaceRoot(namespace)}\0${size}`
  }

  get bytes (): number { return this.#bytes }
  get count (): number { return this.#count }

  names (): Set<string> {
    const out = new Set<string>()
    for (const list of this.#lists.values()) for (const e of list) out.add(e.name)
    return out
  }

  /** Keeps a released segment instead of unlinking it; false when it does not fit (the caller unlinks it). */
  put (record: SegmentRecord): boolean {
    if (record.size > this.maxBytes) return false
    while (this.#bytes + record.size > this.maxBytes) this.#evictOldest()
    // A file someone linked elsewhere or truncated could show the next user's data, or fault: not worth keeping.
    if (!this.#intact(record)) return false
    const name = newSegmentName(this.prefix)
    try {
      shm.rename(record.name, name)
    } catch {
      return false
    }
    const entry: Pooled = { name, ino: record.ino, dev: record.dev, size: record.size, key: SegmentPool.key(record.owner, record.namespace, record.size), since: Date.now(), ready: Promise.resolve(false) }
    entry.ready = this.#zero(entry)
    const list = this.#lists.get(entry.key) ?? []
    list.push(entry)
    this.#lists.set(entry.key, list)
    this.#bytes += entry.size
    this.#count++
    this.journal?.pooled([entry])
    return true
  }

  /** Renames a kept, zeroed segment of this key to `name` and returns its identity; undefined when there is none. */
  async take (key: string, name: string): Promise<shm.Identity | undefined> {
    const entry = this.#lists.get(key)?.shift()
    if (entry === undefined) { this.misses++; return undefined }
    this.#forget(entry)
    try {
      if (await entry.ready && this.#intact(entry)) {
        shm.rename(entry.name, name)
        this.journal?.unpooled([entry.name])
        this.hits++
        return { ino: entry.ino, dev: entry.dev }
      }
    } catch (err) {
      this.log.warn({ err }, 'a pooled segment could not be reused')
    }
    this.#drop(entry)
    this.misses++
    return undefined
  }

  /** Unlinks what has waited longer than the idle time; everything when `all`. */
  trim (now = Date.now(), all = false): number {
    let n = 0
    for (const list of [...this.#lists.values()]) {
      for (const e of [...list]) {
        if (all || now - e.since > this.idleMs) { this.#forget(e); this.#drop(e); n++ }
      }
    }
    return n
  }

  #evictOldest (): void {
    let oldest: Pooled | undefined
    for (const list of this.#lists.values()) for (const e of list) if (oldest === undefined || e.since < oldest.since) oldest = e
    if (oldest === undefined) return
    this.#forget(oldest)
    this.#drop(oldest)
  }

  #forget (entry: Pooled): void {
    const list = this.#lists.get(entry.key)
    const i = list?.indexOf(entry) ?? -1
    if (list !== undefined && i >= 0) list.splice(i, 1)
    if (list?.length === 0) this.#lists.delete(entry.key)
    this.#bytes -= entry.size
    this.#count--
  }

  #drop (entry: Pooled): void {
    // Only our own inode is unlinked: a file someone put under the pool name since is not ours.
    try {
      if (this.#intact(entry, false)) this.reaper.discard(entry.name, entry.size)
    } catch (err) {
      this.log.warn({ err, segment: entry.name }, 'could not unlink a pooled segment')
    }
    this.journal?.unpooled([entry.name])
  }

  /** Still our inode under the pool name; with `whole`, also still its full size (nobody truncated it). */
  #intact (entry: shm.Identity & { name: string, size: number }, whole = true): boolean {
    let opened
    try {
      opened = shm.openVerified(entry.name, entry, false)
    } catch {
      return false
    }
    shm.close(opened.fd)
    return !whole || (opened.stat.size === entry.size && opened.stat.nlink === 1)
  }

  async #zero (entry: Pooled): Promise<boolean> {
    try {
      const { fd } = shm.openVerified(entry.name, entry, true)
      try {
        await zeroFill(fd, entry.size)
      } finally {
        shm.close(fd)
      }
      return true
    } catch (err) {
      this.log.warn({ err, segment: entry.name }, 'could not zero a pooled segment')
      return false
    }
  }
}
