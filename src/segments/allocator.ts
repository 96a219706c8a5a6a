import { isSysError } from '../../native/sys-error.js'
import { inspect, unlinkQuietly, type Created, type Expected } from '../../native/segment-file.js'
import { capacity, close, stat, type Identity, type Stat } from '../../native/shm.js'
import type { Config } from '../config.js'
import type { SegmentFiles } from './files.js'
import type { Handles } from './handles.js'
import type { HeldFds } from './held.js'
import { expiry } from './lease.js'
import { overQuota, type Planned, type QuotaReason } from './plan.js'
import type { PoolEntry, SegmentPool } from './pool.js'
import { pagesOf, type SegmentRegistry, type SegmentRecord } from './registry.js'

/**
 * statfs costs a syscall per create; what others put on /dev/shm in this window is caught by posix_fallocate
 * (reserve on), and the check was a race with them anyway.
 */
const CAPACITY_TTL_MS = 20

/** A create that cannot go ahead, and why, for the metrics. */
export class Refused extends Error {
  constructor (readonly reason: QuotaReason, readonly error: Error) { super(error.message) }
}

/** A kept file's owner swapped its name away while a create reused it: that create is undone and made fresh. */
class Swapped extends Error {}

/**
 * Makes the files of one create: checks the quotas (giving back kept segments first), journals the names before
 * the files exist, reuses a kept segment of the same owner, root and size or makes a fresh one, and leaves
 * nothing behind when any of them fails. Creations in flight count against the quotas until they end.
 */
export class Allocator {
  #pendingCount = 0
  #pendingPages = 0
  #freeCache = 0
  #freeAt = -Infinity

  constructor (private readonly config: Config, private readonly registry: SegmentRegistry, private readonly pool: SegmentPool,
    private readonly files: SegmentFiles, private readonly handles: Handles, private readonly pageSize: number,
    private readonly held: HeldFds) {}

  /**
   * Journals every record before the client can hear of it. Fresh files are intended first (recovery unlinks
   * what a SIGKILL leaves of them); a kept file is renamed only after its record is written, so recovery finds
   * it either under the new name, adopted, or under its pool name, in limbo, and unlinks it. `extra`: the owner and
   * mode given to a local caller's files, and the process release_on_exit binds them to.
   */
  async allocate (planned: Planned[], namespace: string, ttl: number, owner: string | null, extra: Pick<SegmentRecord, 'file' | 'boundTo'> = {}): Promise<SegmentRecord[]> {
    try {
      return await this.#allocate(planned, namespace, ttl, owner, extra, true)
    } catch (err) {
      if (!(err instanceof Swapped)) throw err
      // Undone already, the swapped-in object back where its owner put it: the same create again, all fresh.
      return await this.#allocate(planned, namespace, ttl, owner, extra, false)
    }
  }

  async #allocate (planned: Planned[], namespace: string, ttl: number, owner: string | null, extra: Pick<SegmentRecord, 'file' | 'boundTo'>, reuse: boolean): Promise<SegmentRecord[]> {
    const pages = planned.reduce((n, p) => n + pagesOf(p.size, this.pageSize), 0)
    this.#checkQuota(planned.length, pages, namespace)
    this.#pendingCount += planned.length
    this.#pendingPages += pages
    // Pool entries taken for this create; each one's fd (if the pool kept one) goes with its live segment (HeldFds).
    const kept: Array<PoolEntry | undefined> = []
    const made: SegmentRecord[] = []
    const names = planned.map(() => this.files.newName())
    let journaled = false
    let swapped: PoolEntry | undefined
    try {
      // A local caller's files are never pooled: they belong to it, and it could keep one open past its release.
      for (const p of planned) {
        const taking = reuse && extra.file === undefined ? this.pool.take(owner, namespace, p.size) : undefined
        kept.push(this.#checked(taking instanceof Promise ? await taking : taking, p.size))
      }
      const fresh: string[] = []
      let freshPages = 0
      for (let i = 0; i < planned.length; i++) {
        if (kept[i] !== undefined) continue
        fresh.push(names[i] as string)
        freshPages += pagesOf((planned[i] as Planned).size, this.pageSize)
      }
      if (fresh.length > 0) this.files.intend(fresh)
      // One clock reading for the whole create: its records share a creation time and an expiry.
      const createdAt = Date.now()
      for (let i = 0; i < planned.length; i++) {
        const item = planned[i] as Planned
        let id: Identity | undefined = kept[i]
        if (id === undefined) {
          const fresh = this.#fresh(names, i, item.size, extra.file)
          const created = fresh instanceof Promise ? await fresh : fresh
          // Its fd stays with the live segment, as a kept file's does: its release then needs no open.
          if (created.fd !== undefined) this.held.keep(created.name, created.fd)
          id = created
        }
        made.push(record(names[i] as string, namespace, item, id, createdAt, ttl, owner, extra))
      }
      await this.files.created(made)
      journaled = true
      for (let i = 0; i < kept.length; i++) {
        const from = kept[i]
        if (from === undefined) continue
        // A file the service does not own (TENSORSHM_SEGMENT_OWNER) is looked at again after the move; still `kept`, it
        // is left alone by the undoing below, as is what its owner swapped in.
        if (!this.files.moveChecked(from.name, names[i] as string, from)) { swapped = from; throw new Swapped() }
        kept[i] = undefined
        if (from.fd !== undefined) this.held.keep(names[i] as string, from.fd)
        this.files.settled([from.name])
      }
      this.#freeCache -= freshPages
      return made
    } catch (err) {
      for (const from of kept) {
        if (from === undefined) continue
        if (from.fd !== undefined) close(from.fd)
        // Under a swapped name is the owner's object again, and the file went where the owner put it: neither is
        // unlinked (by name, the owner could swap it back in between the look and the unlink). Forgotten, as a
        // raced release's is.
        if (from === swapped) this.files.settled([from.name])
        else this.files.discard(from.name, from, from.size)
      }
      for (const r of made) {
        // A renamed kept file handed its fd over already: that goes with the file.
        this.held.drop(r.name)
        if (!kept.some((k) => k !== undefined && k.ino === r.ino && k.dev === r.dev)) unlinkQuietly(r.name)
      }
      if (journaled) this.files.forgot(made.map((r) => r.name))
      this.files.settled(names)
      throw err
    } finally {
      this.#pendingCount -= planned.length
      this.#pendingPages -= pages
    }
  }

  #checkQuota (count: number, pages: number, namespace: string): void {
    const usage = () => {
      const pool = this.pool.figures()
      return {
        segments: this.registry.count + this.#pendingCount + pool.segments,
        pages: this.registry.pages + this.#pendingPages + pool.pages + this.handles.heldPages + this.files.unlinkingPages,
        inNamespace: this.registry.countIn(namespace),
        free: this.#free() - this.#pendingPages
      }
    }
    let over = overQuota(count, pages, namespace, usage(), this.config)
    if (over !== undefined && over.reason !== 'namespace_segments') {
      // Kept segments are ours to give back: make room with them before refusing anyone, on a fresh statfs.
      this.#freeAt = -Infinity
      const u = usage()
      this.pool.evict(u.pages + pages - (this.config.maxTotalBytes || Infinity), u.segments + count - this.config.maxSegments)
      if (over.reason === 'capacity') this.pool.evict(pages - u.free, 0)
      this.#freeAt = -Infinity
      over = overQuota(count, pages, namespace, usage(), this.config)
    }
    if (over !== undefined) throw new Refused(over.reason, over.error)
  }

  /** A fresh file under names[i]; 64 random bits collide only with a file someone placed on purpose: draw again, a few times. */
  #fresh (names: string[], i: number, size: number, access: SegmentRecord['file']): Created | Promise<Created> {
    for (let attempt = 0; ; attempt++) {
      try {
        // EEXIST comes from the O_EXCL open, before any promise.
        return this.files.create(names[i] as string, size, { access, keepOpen: true })
      } catch (err) {
        if (!isSysError(err, 'EEXIST') || attempt >= 3) throw err
        names[i] = this.files.newName()
        this.files.intend([names[i] as string])
      }
    }
  }

  /** Free bytes on /dev/shm, from statfs at most every CAPACITY_TTL_MS and less what was created since. */
  #free (): number {
    const now = Date.now()
    if (now - this.#freeAt > CAPACITY_TTL_MS) { this.#freeCache = capacity().free; this.#freeAt = now }
    return this.#freeCache
  }

  /** A kept segment, checked to be still ours, unlinked and whole; undefined when it is not (it is then dropped). */
  #checked (entry: PoolEntry | undefined, size: number): PoolEntry | undefined {
    if (entry === undefined) return undefined
    // A client that kept an fd (or a link) could still truncate or read the file: such a file is not reused.
    const stat = entry.fd !== undefined ? statQuietly(entry.fd) : inspectStat(entry.name, this.files.expected(entry))
    if (stat === undefined || !stat.regular || stat.ino !== entry.ino || stat.dev !== entry.dev || stat.nlink !== 1 || stat.size !== size) {
      if (entry.fd !== undefined) close(entry.fd)
      this.files.discard(entry.name, entry, entry.size)
      return undefined
    }
    return entry
  }
}

function statQuietly (fd: number): Stat | undefined {
  try { return stat(fd) } catch { return undefined }
}

function inspectStat (name: string, expected: Expected): Stat | undefined {
  const found = inspect(name, expected)
  return found.kind === 'ours' ? found.stat : undefined
}

function record (name: string, namespace: string, { key, index, spec, size }: Planned, id: Identity, createdAt: number, ttl: number, owner: string | null, extra: Pick<SegmentRecord, 'file' | 'boundTo'>): SegmentRecord {
  const r: SegmentRecord = { name, namespace, key, index, shape: spec.shape, dtype: spec.dtype, nbytes: spec.nbytes, size, ino: id.ino, dev: id.dev, createdAt, ttl, expiresAt: expiry(createdAt, ttl), owner }
  if (extra.file !== undefined) r.file = extra.file
  if (extra.boundTo !== undefined) r.boundTo = extra.boundTo
  return r
}
