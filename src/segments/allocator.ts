import { isSysError } from '../../native/sys-error.js'
import { inspect, unlinkQuietly } from '../../native/segment-file.js'
import { capacity, type Identity } from '../../native/shm.js'
import type { Config } from '../config.js'
import type { SegmentFiles } from './files.js'
import type { Handles } from './handles.js'
import { expiry } from './lease.js'
import { overQuota, type Planned, type QuotaReason } from './plan.js'
import type { SegmentPool } from './pool.js'
import { pagesOf, type SegmentRegistry, type SegmentRecord } from './registry.js'

/** A create that cannot go ahead, and why, for the metrics. */
export class Refused extends Error {
  constructor (readonly reason: QuotaReason, readonly error: Error) { super(error.message) }
}

/**
 * Makes the files of one create: checks the quotas (giving back kept segments first), journals the names before
 * the files exist, reuses a kept segment of the same owner, root and size or makes a fresh one, and leaves
 * nothing behind when any of them fails. Creations in flight count against the quotas until they end.
 */
export class Allocator {
  #pendingCount = 0
  #pendingPages = 0

  constructor (private readonly config: Config, private readonly registry: SegmentRegistry, private readonly pool: SegmentPool,
    private readonly files: SegmentFiles, private readonly handles: Handles, private readonly pageSize: number) {}

  /** `extra`: the owner and mode given to a local caller's files, and the process release_on_exit binds them to. */
  async allocate (planned: Planned[], namespace: string, ttl: number, owner: string | null, extra: Pick<SegmentRecord, 'file' | 'boundTo'> = {}): Promise<SegmentRecord[]> {
    const pages = planned.reduce((n, p) => n + pagesOf(p.size, this.pageSize), 0)
    this.#checkQuota(planned.length, pages, namespace)
    this.#pendingCount += planned.length
    this.#pendingPages += pages
    const names = planned.map(() => this.files.newName())
    const made: SegmentRecord[] = []
    try {
      this.files.intend(names)
      for (const [i, item] of planned.entries()) made.push(await this.#createOne(names, i, namespace, item, ttl, owner, extra))
      return made
    } catch (err) {
      for (const r of made) unlinkQuietly(r.name)
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
        free: capacity().free - this.#pendingPages
      }
    }
    let over = overQuota(count, pages, namespace, usage(), this.config)
    if (over !== undefined && over.reason !== 'namespace_segments') {
      // Kept segments are ours to give back: make room with them before refusing anyone.
      const u = usage()
      this.pool.evict(u.pages + pages - (this.config.maxTotalBytes || Infinity), u.segments + count - this.config.maxSegments)
      if (over.reason === 'capacity') this.pool.evict(pages - u.free, 0)
      over = overQuota(count, pages, namespace, usage(), this.config)
    }
    if (over !== undefined) throw new Refused(over.reason, over.error)
  }

  async #createOne (names: string[], i: number, namespace: string, { key, index, spec, size }: Planned, ttl: number, owner: string | null, extra: Pick<SegmentRecord, 'file' | 'boundTo'>): Promise<SegmentRecord> {
    for (let attempt = 0; ; attempt++) {
      const name = names[i] as string
      try {
        // A local caller's files are never pooled: they belong to it, and it could keep one open past its release.
        const pooled = attempt === 0 && extra.file === undefined ? await this.#fromPool(owner, namespace, size, name) : undefined
        const id = pooled ?? await this.files.create(name, size, extra.file)
        const createdAt = Date.now()
        const record: SegmentRecord = { name, namespace, key, index, shape: spec.shape, dtype: spec.dtype, nbytes: spec.nbytes, size, ino: id.ino, dev: id.dev, createdAt, ttl, expiresAt: expiry(createdAt, ttl), owner }
        if (extra.file !== undefined) record.file = extra.file
        if (extra.boundTo !== undefined) record.boundTo = extra.boundTo
        return record
      } catch (err) {
        // 64 random bits collide only with a file someone placed on purpose: draw again, a few times.
        if (!isSysError(err, 'EEXIST') || attempt >= 3) throw err
        names[i] = this.files.newName()
        this.files.intend([names[i] as string])
      }
    }
  }

  /** A kept segment of this owner, root and size, renamed to `name`; undefined when there is none to reuse. */
  async #fromPool (owner: string | null, namespace: string, size: number, name: string): Promise<Identity | undefined> {
    const entry = await this.pool.take(owner, namespace, size)
    if (entry === undefined) return undefined
    const found = inspect(entry.name, this.files.expected(entry))
    // A file someone linked elsewhere or truncated could show the next user's data, or fault: not reused.
    if (found.kind !== 'ours' || found.stat.nlink !== 1 || found.stat.size !== size) { this.files.discard(entry.name, entry, entry.size); return undefined }
    try {
      this.files.rename(entry.name, name)
    } catch (err) {
      this.files.discard(entry.name, entry, entry.size)
      throw err
    }
    this.files.settled([entry.name])
    return { ino: entry.ino, dev: entry.dev }
  }
}
