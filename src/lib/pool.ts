import type { FastifyBaseLogger } from 'fastify'
import { zeroFill } from '../../native/io.js'
import { unlinkQuietly } from '../../native/segment.js'
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
  clean: boolean
}

/** Makes a fresh, backed segment under `name` for the pool to hand out (zero pages by construction). */
export type SpareFactory = (name: string, size: number) => Promise<shm.Identity>

/** A key allocating back to back can outrun the zeroing of its last release: it gets up to this many spares. */
const MAX_PER_KEY = 4

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
  /** Spares being made, by key: the promise, and the name the file will have. */
  readonly #growing = new Map<string, { done: Promise<void>, name: string }>()
  #closed = false
  #bytes = 0
  #count = 0
  hits = 0
  misses = 0

  constructor (private readonly maxBytes: number, private readonly idleMs: number, private readonly prefix: string,
    private readonly log: FastifyBaseLogger, private readonly reaper: Reaper, private readonly spare: SpareFactory,
    private readonly journal?: PoolJournal) {}

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
    const key = SegmentPool.key(record.owner, record.namespace, record.size)
    const entry: Pooled = { name, ino: record.ino, dev: record.dev, size: record.size, key, since: Date.now(), ready: Promise.resolve(false), clean: false }
    entry.ready = this.#zero(entry)
    this.#add(entry)
    return true
  }

  /** Renames a kept, zeroed segment for this owner, namespace root and size under `name` and returns its identity; undefined when there is none. */
  async take (owner: string | null, namespace: string, size: number, name: string): Promise<shm.Identity | undefined> {
    const key = SegmentPool.key(owner, namespace, size)
    const list = this.#lists.get(key) ?? []
    const entry = list.find((e) => e.clean) ?? list[0]
    if (entry === undefined) { this.misses++; return undefined }
    // Only dirty ones left: this key reallocates faster than its pages are zeroed, so keep a spare ready for it.
    if (!entry.clean) this.#grow(key, size)
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

  #add (entry: Pooled): void {
    const list = this.#lists.get(entry.key) ?? []
    list.push(entry)
    this.#lists.set(entry.key, list)
    this.#bytes += entry.size
    this.#count++
    this.journal?.pooled([entry])
  }

  /** Adds one fresh segment for `key` in the background, within the per-key and byte limits. */
  #grow (key: string, size: number): void {
    if (this.#closed || this.#growing.has(key) || (this.#lists.get(key)?.length ?? 0) >= MAX_PER_KEY || this.#bytes + size > this.maxBytes) return
    const name = newSegmentName(this.prefix)
    const done = this.spare(name, size)
      .then((id) => {
        const entry: Pooled = { ...id, name, size, key, since: Date.now(), ready: Promise.resolve(true), clean: true }
        if (this.#closed) this.reaper.discard(name, size)
        else this.#add(entry)
      })
      .catch((err: unknown) => { this.log.debug({ err }, 'no spare segment for the pool') })
      .finally(() => { this.#growing.delete(key) })
    this.#growing.set(key, { done, name })
  }

  /** Resolves when every kept segment is zeroed and no spare is being made. */
  async idle (): Promise<void> {
    await Promise.all([...this.#lists.values()].flat().map(async (e) => await e.ready))
    await Promise.all([...this.#growing.values()].map(async (g) => await g.done))
  }

  /** Empties the pool for good, spares still being made included. */
  async close (): Promise<void> {
    this.#closed = true
    this.trim(Date.now(), true)
    await Promise.all([...this.#growing.values()].map(async (g) => await g.done))
  }

  /** The same, synchronously, for a process that is about to exit: spares in the making are unlinked by name. */
  closeNow (): void {
    this.#closed = true
    this.trim(Date.now(), true)
    for (const { name } of this.#growing.values()) unlinkQuietly(name)
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
      entry.clean = true
      return true
    } catch (err) {
      this.log.warn({ err, segment: entry.name }, 'could not zero a pooled segment')
      return false
    }
  }
}
