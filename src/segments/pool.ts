import { zeroesInline, zeroFill, zeroSync } from '../../native/io.js'
import { probe, type Expected } from '../../native/segment-file.js'
import { close, type Identity, type Stat } from '../../native/shm.js'
import type { Logger } from './logger.js'
import { namespaceRoot } from './namespace.js'
import { pagesOf } from './registry.js'

export interface PoolEntry extends Identity {
  name: string
  size: number
  key: string
  /** The file, open read-write and checked to be ours when it was released: reuse needs no second open. */
  fd?: number | undefined
}

interface Pooled extends PoolEntry {
  since: number
  /** Resolves true once the file is all zeros; false if it could not be zeroed (it is then dropped). */
  ready: Promise<boolean>
  clean: boolean
  /** Left the pool unused (evicted, trimmed, closed): not worth zeroing any more. */
  dropped: boolean
  zeroing: boolean
}

/** What the pool needs done to files; each is journaled by the caller before it happens. */
export interface PoolFiles {
  expected: (identity?: Identity) => Expected
  /** Unlinks a kept file that will not be reused. */
  drop: (entry: PoolEntry) => void
  /** A name for a file that clients never see. */
  newName: () => string
  /** Makes a fresh, backed segment for the pool to hand out (zero pages by construction). */
  spare: (name: string, size: number) => Promise<Identity>
  /** Unlinks a spare by name, for a process about to exit. */
  dropNow: (name: string) => void
}

/** A key allocating back to back can outrun the zeroing of its last release: it gets up to this many spares. */
const MAX_PER_KEY = 4
/** Files kept at most, whatever their size: a release of thousands of tiny segments does not all go to the pool. */
const MAX_ENTRIES = 1024
/** Kept files that keep their descriptor open (the rest are opened again by name); a small share of the fd budget. */
const MAX_HELD_FDS = 64
const CLEAN = Promise.resolve(true)
const DIRTY = Promise.resolve(false)

/** Files zeroed at once: each holds an fd, and a mass release must not open thousands of them together. */
const ZEROING = 2

export interface PoolFigures { segments: number, bytes: number, pages: number, hits: number, misses: number }

/**
 * Released segments kept for the next allocation of the same size by the same client, because a fresh segment
 * costs its pages (posix_fallocate, or page faults in the writer) and a recycled one does not. A kept segment is
 * under a name clients never saw, zeroed before reuse, and only ever reused by the same key and the same
 * namespace root (`<client_id>`), so no data crosses from one client to another.
 */
export class SegmentPool {
  readonly #lists = new Map<string, Pooled[]>()
  /** Every entry, oldest first (entries are added in time order): eviction and trimming never scan the pool. */
  readonly #all = new Set<Pooled>()
  /** Spares being made, by key: the promise, and the name the file will have. */
  readonly #growing = new Map<string, { done: Promise<void>, name: string }>()
  #closed = false
  /** Released files waiting for their turn to be zeroed, and how many are being zeroed now. */
  readonly #queue: Array<{ entry: Pooled, settle: (clean: boolean) => void }> = []
  #zeroing = 0
  #heldFds = 0
  #bytes = 0
  #pages = 0
  #count = 0
  #hits = 0
  #misses = 0

  constructor (private readonly maxBytes: number, private readonly idleMs: number, private readonly pageSize: number,
    private readonly files: PoolFiles, private readonly log: Logger) {}

  static key (owner: string | null, namespace: string, size: number): string {
    return `${owner ?? ''}\0${namespaceRoot(namespace)}\0${size}`
  }

  figures (): PoolFigures {
    return { segments: this.#count, bytes: this.#bytes, pages: this.#pages, hits: this.#hits, misses: this.#misses }
  }

  /** Whether a released file (open as `stat`) is worth keeping: it fits, and nobody linked or truncated it. */
  wants (size: number, stat: Stat): boolean {
    return !this.#closed && size <= this.maxBytes && stat.nlink === 1 && stat.size === size
  }

  /** Takes a released segment, already renamed to `entry.name`; older ones go to make room. */
  admit (entry: PoolEntry): void {
    while ((this.#bytes + entry.size > this.maxBytes || this.#count >= MAX_ENTRIES) && this.#count > 0) this.#evictOldest()
    // Spelled out, not spread: one object of a fixed shape per release.
    const pooled: Pooled = { name: entry.name, ino: entry.ino, dev: entry.dev, size: entry.size, key: entry.key, fd: entry.fd, since: Date.now(), ready: DIRTY, clean: false, dropped: false, zeroing: false }
    if (pooled.fd !== undefined) this.#heldFds++
    this.#add(pooled)
    // A small file that came with its fd, and nothing queued before it: zeroed now through that fd (a few µs), without
    // the queue's promises, and before the pool's share of descriptors is looked at: one that has to give its fd up
    // is not opened again by name later just to be zeroed (a mass release of fresh namespaces did that for nearly all).
    const { fd } = pooled
    const inline = fd !== undefined && zeroesInline(pooled.size) && this.#queue.length === 0
    if (inline) {
      try {
        zeroSync(fd, pooled.size)
      } catch (err) {
        this.log.warn({ err, segment: pooled.name }, 'could not zero a pooled segment')
        this.#drop(pooled)
        return
      }
      pooled.clean = true
      pooled.ready = CLEAN
    } else {
      pooled.ready = new Promise((resolve) => { this.#queue.push({ entry: pooled, settle: resolve }) })
    }
    // Past the pool's share of descriptors, this one is looked up by name when it is taken (or zeroed, if queued).
    if (pooled.fd !== undefined && this.#heldFds > MAX_HELD_FDS) { close(pooled.fd); pooled.fd = undefined; this.#heldFds-- }
    if (!inline) this.#pump()
  }

  /**
   * A kept, zeroed segment for this owner, namespace root and size, taken out of the pool: at once when one is zeroed
   * already, else a promise for when it is. Undefined, at once, when there is none: a create of many fresh tensors
   * does not wait a turn for each, nor one taking a clean file.
   */
  take (owner: string | null, namespace: string, size: number): PoolEntry | Promise<PoolEntry | undefined> | undefined {
    const key = SegmentPool.key(owner, namespace, size)
    const list = this.#lists.get(key)
    const entry = list?.find((e) => e.clean) ?? list?.[0]
    if (entry === undefined) { this.#misses++; return undefined }
    if (entry.clean) { this.#forget(entry); this.#hits++; return this.#handOver(entry) }
    // Only dirty ones left: this key reallocates faster than its pages are zeroed, so keep a spare ready for it.
    this.#grow(key, size)
    this.#forget(entry)
    return entry.ready.then((clean) => {
      if (clean) { this.#hits++; return this.#handOver(entry) }
      this.files.drop(this.#handOver(entry))
      this.#misses++
      return undefined
    })
  }

  /** Unlinks what has waited longer than the idle time. */
  trim (now = Date.now()): void {
    for (const e of this.#all) {
      if (now - e.since <= this.idleMs) break
      this.#drop(e)
    }
  }

  /** Gives back pages and files until `pages` and `segments` more have been freed, or the pool is empty. */
  evict (pages: number, segments: number): void {
    while ((pages > 0 || segments > 0) && this.#count > 0) {
      const freed = this.#evictOldest()
      pages -= freed
      segments--
    }
  }

  /** Resolves when every kept segment is zeroed and no spare is being made. */
  async idle (): Promise<void> {
    await Promise.all(this.#entries().map(async (e) => await e.ready))
    await Promise.all([...this.#growing.values()].map(async (g) => await g.done))
  }

  /** Empties the pool for good, now; spares still being made are unlinked by name. */
  closeNow (): void {
    this.#closed = true
    for (const e of this.#entries()) this.#drop(e)
    for (const g of this.#growing.values()) this.files.dropNow(g.name)
  }

  /** Empties the pool for good, once the spares being made are there to be unlinked. */
  async close (): Promise<void> {
    this.#closed = true
    for (const e of this.#entries()) this.#drop(e)
    await Promise.all([...this.#growing.values()].map(async (g) => await g.done))
  }

  #entries (): Pooled[] {
    return [...this.#all]
  }

  #add (entry: Pooled): void {
    const list = this.#lists.get(entry.key) ?? []
    list.push(entry)
    this.#lists.set(entry.key, list)
    this.#all.add(entry)
    this.#bytes += entry.size
    this.#pages += pagesOf(entry.size, this.pageSize)
    this.#count++
  }

  /** Adds one fresh segment for `key` in the background, within the per-key and byte limits. */
  #grow (key: string, size: number): void {
    if (this.#closed || this.#growing.has(key) || (this.#lists.get(key)?.length ?? 0) >= MAX_PER_KEY || this.#bytes + size > this.maxBytes) return
    const name = this.files.newName()
    const growing = { done: Promise.resolve(), name }
    growing.done = this.files.spare(name, size)
      .then((id) => {
        const entry: Pooled = { ...id, name, size, key, since: Date.now(), ready: Promise.resolve(true), clean: true, dropped: false, zeroing: false }
        if (this.#closed) this.files.drop(entry)
        else this.#add(entry)
      })
      .catch((err: unknown) => { this.log.debug({ err }, 'no spare segment for the pool') })
      .finally(() => { this.#growing.delete(key) })
    this.#growing.set(key, growing)
  }

  #evictOldest (): number {
    const oldest = this.#all.values().next().value
    if (oldest === undefined) return 0
    this.#drop(oldest)
    return pagesOf(oldest.size, this.pageSize)
  }

  #drop (entry: Pooled): void {
    entry.dropped = true
    this.#forget(entry)
    // One being zeroed keeps its fd until the zeroing ends and finds it dropped; its name goes now all the same.
    if (!entry.zeroing) {
      const { fd } = this.#handOver(entry)
      if (fd !== undefined) close(fd)
    }
    this.files.drop(entry)
  }

  /** The entry's fd, if it still has one, now belongs to whoever takes the entry. */
  #handOver (entry: Pooled): PoolEntry {
    const { fd } = entry
    if (fd !== undefined) { entry.fd = undefined; this.#heldFds-- }
    return { name: entry.name, ino: entry.ino, dev: entry.dev, size: entry.size, key: entry.key, fd }
  }

  #forget (entry: Pooled): void {
    const list = this.#lists.get(entry.key)
    const i = list?.indexOf(entry) ?? -1
    if (list === undefined || i < 0) return
    list.splice(i, 1)
    if (list.length === 0) this.#lists.delete(entry.key)
    this.#all.delete(entry)
    this.#bytes -= entry.size
    this.#pages -= pagesOf(entry.size, this.pageSize)
    this.#count--
  }

  /** Zeroes queued files a few at a time; a file dropped while it waited is skipped. */
  #pump (): void {
    while (this.#zeroing < ZEROING && this.#queue.length > 0) {
      const { entry, settle } = this.#queue.shift() as { entry: Pooled, settle: (clean: boolean) => void }
      if (entry.dropped) { settle(false); continue }
      this.#zeroing++
      this.#zero(entry).then(settle, () => settle(false)).finally(() => { this.#zeroing--; this.#pump() })
    }
  }

  async #zero (entry: Pooled): Promise<boolean> {
    entry.zeroing = true
    let fd = entry.fd
    try {
      if (fd === undefined) {
        const found = probe(entry.name, this.files.expected(entry), true)
        if (found.kind !== 'ours') return false
        fd = found.fd
      }
      await zeroFill(fd, entry.size)
      entry.clean = true
      return true
    } catch (err) {
      this.log.warn({ err, segment: entry.name }, 'could not zero a pooled segment')
      return false
    } finally {
      entry.zeroing = false
      if (!entry.dropped && entry.clean && (entry.fd !== undefined || this.#heldFds < MAX_HELD_FDS)) {
        if (entry.fd === undefined) { entry.fd = fd; this.#heldFds++ }
      } else {
        if (entry.fd !== undefined) { entry.fd = undefined; this.#heldFds-- }
        if (fd !== undefined) close(fd)
      }
    }
  }
}
