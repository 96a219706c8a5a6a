import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { isSysError } from '../../native/errors.js'
import { createSegment, presence, unlinkQuietly, type Presence } from '../../native/segment.js'
import { capacity } from '../../native/shm.js'
import type { Config } from './config.js'
import { errors } from './errors.js'
import type { Journal } from './journal.js'
import { Handles, type Handle } from './handles.js'
import { newSegmentName } from './names.js'
import { Owners } from './owners.js'
import { Reaper } from './reaper.js'
import { SegmentPool } from './pool.js'
import { checkQuota, plan, QuotaError, type CreateRequest, type Planned, type QuotaReason } from './plan.js'
import { Registry, type SegmentRecord } from './registry.js'

export type { CreateRequest } from './plan.js'
export type { Handle } from './handles.js'
export type ReleaseReason = 'client' | 'expired' | 'shutdown' | 'vanished'

export interface CreateResult {
  namespace: string
  segments: Map<string, SegmentRecord | SegmentRecord[]>
}

interface Events {
  created: [records: SegmentRecord[]]
  released: [records: SegmentRecord[], reason: ReleaseReason]
  rejected: [reason: QuotaReason]
}

export interface ServiceOptions {
  journal?: Journal | undefined
  /** Where segment names come from; the CSPRNG unless a test needs a collision. */
  names?: () => string
}

/** Segment lifecycle: policy over the registry, files through the native layer. Knows nothing of HTTP. */
export class SegmentService extends EventEmitter<Events> {
  readonly registry = new Registry()
  readonly pool: SegmentPool
  readonly reaper: Reaper
  /** namespace\0key pairs being created right now, so two requests cannot both take a key. */
  readonly #pending = new Set<string>()
  #pendingBytes = 0
  readonly #handles = new Handles()
  readonly #journal: Journal | undefined
  readonly #names: () => string
  readonly #owners: Owners
  #closing = false

  constructor (private readonly config: Config, private readonly log: FastifyBaseLogger, options: ServiceOptions = {}) {
    super()
    this.#journal = options.journal
    this.#names = options.names ?? (() => newSegmentName(config.segmentPrefix))
    this.reaper = new Reaper(config.segmentPrefix, log)
    const spare = async (name: string, size: number) => await createSegment(name, { size, mode: config.segmentMode, owner: config.segmentOwner, reserve: config.reserve })
    this.pool = new SegmentPool(config.poolBytes, config.poolIdleMs, config.segmentPrefix, log, this.reaper, spare, options.journal)
    this.#owners = new Owners(options.journal)
  }

  /** Takes back what the journal knows and is still on /dev/shm; returns the records whose files are gone. */
  recover (): SegmentRecord[] {
    if (this.#journal === undefined) return []
    const { records, owners, pooled } = this.#journal.replay()
    for (const [root, owner] of owners) this.#owners.map.set(root, owner)
    // A pool does not outlive its process: what was kept for reuse is unlinked (if it is still ours).
    for (const e of pooled) if (presence(e.name, e) === 'present') unlinkQuietly(e.name)
    const vanished: SegmentRecord[] = []
    for (const r of records) {
      if (presence(r.name, r) === 'present') this.registry.add(r)
      else vanished.push(r)
    }
    this.#journal.compact(this.registry.values(), this.#owners.map)
    if (vanished.length > 0) this.emit('released', vanished, 'vanished')
    return vanished
  }

  /**
   * `owner` is the caller's key id, or null under local trust. Methods that take one only see and touch that
   * owner's segments; the sweeper and shutdown pass none and see everything.
   */
  async create (request: CreateRequest, owner: string | null = null): Promise<CreateResult> {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
    const { namespace } = request
    this.#owners.check(namespace, owner)
    const planned = plan(request, this.config.maxSegmentBytes)
    const keys = Object.keys(request.tensors)
    for (const key of keys) {
      if (this.registry.hasKey(namespace, key) || this.#pending.has(`${namespace}\0${key}`)) {
        throw new errors.DuplicateKey(`tensors.${key}: the key is already registered in namespace "${namespace}"`)
      }
    }
    try {
      checkQuota(planned, namespace, this.registry, this.config, this.#pendingBytes)
    } catch (err) {
      if (err instanceof QuotaError) { this.emit('rejected', err.reason); throw err.error }
      throw err
    }
    const ttl = request.ttl_seconds ?? this.config.defaultTtl
    const bytes = planned.reduce((n, p) => n + p.size, 0)
    for (const key of keys) this.#pending.add(`${namespace}\0${key}`)
    this.#pendingBytes += bytes
    const made: SegmentRecord[] = []
    try {
      for (const item of planned) made.push(await this.#createOne(namespace, item, ttl, owner))
    } catch (err) {
      for (const r of made) unlinkQuietly(r.name)
      if (isSysError(err, 'ENOSPC')) { this.emit('rejected', 'capacity'); throw new errors.InsufficientStorage('tensors: /dev/shm has no room for the requested segments') }
      throw err
    } finally {
      for (const key of keys) this.#pending.delete(`${namespace}\0${key}`)
      this.#pendingBytes -= bytes
    }
    this.#owners.claim(namespace, owner)
    for (const r of made) this.registry.add(r)
    this.#journal?.created(made)
    this.emit('created', made)
    return { namespace, segments: group(made) }
  }

  get (name: string, owner?: string | null, field = 'name'): SegmentRecord {
    const record = this.registry.get(name)
    // Another key's segment is answered exactly like an unknown one, and the name is not repeated back.
    if (record === undefined || (owner !== undefined && record.owner !== owner)) throw new errors.SegmentNotFound(`${field}: no segment of this service has that name`)
    return record
  }

  presence (record: SegmentRecord): Presence {
    return presence(record.name, record)
  }

  list (namespace?: string, owner?: string | null): SegmentRecord[] {
    const all = [...this.registry.covered(namespace)]
    return owner === undefined ? all : all.filter((r) => r.owner === owner)
  }

  /** Ready when not closing and /dev/shm answers. */
  assertReady (): void {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
    capacity()
  }

  /** Opens a registered segment for I/O (see Handles); a vanished one is forgotten on the way. */
  open (record: SegmentRecord, writable: boolean): Handle {
    return this.#handles.open(record, writable, () => { this.forget([record], 'vanished') })
  }

  release (name: string, reason: ReleaseReason, owner?: string | null): SegmentRecord {
    const record = this.get(name, owner)
    this.#unlink([record], reason)
    return record
  }

  releaseNamespace (namespace: string, reason: ReleaseReason, owner?: string | null): number {
    const records = this.list(namespace, owner)
    this.#unlink(records, reason)
    return records.length
  }

  /** Extends the lease of every segment in `namespace` (and below) by `ttl` seconds, or by each one's own TTL. */
  renew (namespace: string, ttl: number | undefined, owner?: string | null): SegmentRecord[] {
    const now = Date.now()
    const records = this.list(namespace, owner)
    for (const r of records) {
      if (ttl !== undefined) r.ttl = ttl
      r.expiresAt = r.ttl === 0 ? null : now + r.ttl * 1000
    }
    if (records.length > 0) this.#journal?.leased(records)
    return records
  }

  /** Drops records without touching files: theirs are gone already. */
  forget (records: SegmentRecord[], reason: ReleaseReason): void {
    const known = records.filter((r) => this.registry.get(r.name) === r)
    if (known.length === 0) return
    for (const r of known) {
      this.registry.delete(r.name)
      this.log.warn({ segment: r.name, namespace: r.namespace, bytes: r.size }, 'segment vanished from /dev/shm')
    }
    this.#journal?.released(known.map((r) => r.name))
    this.emit('released', known, reason)
  }

  /**
   * Closing starts: no new allocations, and the pool (released segments nobody can reach any more) goes at once,
   * synchronously. A supervisor such as `npm start` reports the exit a few ms after the signal, before in-flight
   * requests finish; what can be unlinked without waiting for them is gone by then.
   */
  beginShutdown (): void {
    this.#closing = true
    this.pool.closeNow()
  }

  /** Stops new allocations, then releases everything unless configured to keep it for the next start. */
  /**
   * The last resort when the process must exit before `shutdown` could finish (a second signal, the grace
   * period over): the same releases, synchronously, so that an exit leaves no file behind either.
   */
  shutdownNow (): void {
    this.#closing = true
    if (!this.config.keepOnShutdown) this.#unlink(this.list(), 'shutdown')
    this.pool.closeNow()
    this.reaper.drainNow()
    this.#journal?.close(this.registry.count === 0)
  }

  async shutdown (): Promise<number> {
    this.#closing = true
    const count = this.registry.count
    if (!this.config.keepOnShutdown) this.#unlink(this.list(), 'shutdown')
    // The pool empties (spares in the making included) and large unlinks finish before the journal closes.
    await this.pool.close()
    await this.reaper.drain()
    this.#journal?.close(this.registry.count === 0)
    return this.config.keepOnShutdown ? 0 : count
  }

  #unlink (records: SegmentRecord[], reason: ReleaseReason): void {
    if (records.length === 0) return
    for (const r of records) {
      this.registry.delete(r.name)
      try {
        // Only a name whose inode is still ours is touched: a look-alike someone put there is not our file.
        if (presence(r.name, r) !== 'present') continue
        // A segment still being read keeps its pages through the reader's fd; it is never recycled under it.
        if (reason !== 'shutdown' && !this.#handles.busy(r.name) && this.pool.put(r)) continue
        this.reaper.discard(r.name, r.size)
      } catch (err) {
        this.log.warn({ err, segment: r.name }, 'could not unlink a released segment')
      }
    }
    this.#journal?.released(records.map((r) => r.name))
    this.#maybeCompact()
    this.emit('released', records, reason)
  }

  #maybeCompact (): void {
    if (this.#journal !== undefined && this.#journal.lines > 1000 + 4 * this.registry.count) {
      this.#journal.compact(this.registry.values(), this.#owners.map)
    }
  }

  async #createOne (namespace: string, { key, index, spec, size }: Planned, ttl: number, owner: string | null): Promise<SegmentRecord> {
    for (let attempt = 0; ; attempt++) {
      const name = this.#names()
      try {
        const created = (attempt === 0 ? await this.pool.take(owner, namespace, size, name) : undefined) ??
          await createSegment(name, { size, mode: this.config.segmentMode, owner: this.config.segmentOwner, reserve: this.config.reserve })
        const createdAt = Date.now()
        return {
          name,
          namespace,
          key,
          index,
          shape: spec.shape,
          dtype: spec.dtype,
          nbytes: spec.nbytes,
          size,
          ino: created.ino,
          dev: created.dev,
          createdAt,
          ttl,
          expiresAt: ttl === 0 ? null : createdAt + ttl * 1000,
          owner
        }
      } catch (err) {
        // 64 random bits collide only with a file someone placed on purpose: draw again, a few times.
        if (!isSysError(err, 'EEXIST') || attempt >= 3) throw err
      }
    }
  }
}

/** Records back into the request's shape. Keys are client strings (`constructor`, `valueOf`): a Map, not `{}`. */
function group (records: SegmentRecord[]): CreateResult['segments'] {
  const out = new Map<string, SegmentRecord | SegmentRecord[]>()
  for (const r of records) {
    if (r.index === null) out.set(r.key, r)
    else {
      const list = out.get(r.key) as SegmentRecord[] | undefined ?? []
      list[r.index] = r
      out.set(r.key, list)
    }
  }
  return out
}
