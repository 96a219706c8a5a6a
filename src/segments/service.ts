import { EventEmitter } from 'node:events'
import { inspect, unlinkIfOurs } from '../../native/segment-file.js'
import { isSysError } from '../../native/sys-error.js'
import { capacity, close as closeFd, openFileLimit } from '../../native/shm.js'
import { fileAccess } from './access.js'
import { OPERATOR, ownerOf, sees, type Caller } from './caller.js'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { SegmentFiles } from './files.js'
import { Allocator, Refused } from './allocator.js'
import { Handles, type Handle } from './handles.js'
import type { Journal } from '../journal/journal.js'
import { ExitWatch, type ProcessRef } from './exit-watch.js'
import { expiry } from './lease.js'
import type { Logger } from './logger.js'
import { checkSegmentName, newSegmentName } from './names.js'
import { namespaceRoot } from './namespace.js'
import { Owners } from './owners.js'
import { plan, type CreateRequest, type QuotaReason } from './plan.js'
import { SegmentPool, type PoolFigures } from './pool.js'
import { SegmentRegistry, type SegmentRecord } from './registry.js'
import { Releaser } from './releaser.js'
import { HeldFds } from './held.js'

export type { CreateRequest } from './plan.js'
export type { Handle } from './handles.js'
export type ReleaseReason = 'client' | 'expired' | 'shutdown' | 'vanished' | 'owner_exit'
/** Whether a segment's file is still there, and still ours. */
export type Presence = 'present' | 'missing' | 'replaced'

export interface CreateResult {
  namespace: string
  segments: Map<string, SegmentRecord | SegmentRecord[]>
}

interface Events {
  recovered: [report: Recovery]
  created: [records: SegmentRecord[]]
  released: [records: SegmentRecord[], reason: ReleaseReason]
  rejected: [reason: QuotaReason]
}

/** What the service holds, for metrics and /v1/stats alike. */
export interface SegmentFigures {
  segments: number
  bytes: number
  /** Pages of released segments still held: open by a transfer or decode, or being unlinked. */
  heldBytes: number
  pool: PoolFigures
}

export interface Recovery { recovered: number, vanished: SegmentRecord[], cleaned: number, expired: number, skipped: number }

export interface ServiceOptions {
  /** Where segment names come from; the CSPRNG unless a test needs a collision. */
  names?: () => string
}

/** Segment lifecycle: policy over the registry, files through SegmentFiles and the native layer. Knows nothing of HTTP. */
export class SegmentService extends EventEmitter<Events> {
  readonly #registry: SegmentRegistry
  readonly #pool: SegmentPool
  readonly #files: SegmentFiles
  readonly #handles: Handles
  readonly #owners: Owners
  readonly #exits: ExitWatch
  /** Pidfds held by creates in flight, not yet watched; with the watched ones, at most #maxBound. */
  #binding = 0
  readonly #maxBound: number
  /** Keys being created right now, by namespace, so two requests cannot both take a key. */
  readonly #pending = new Map<string, Set<string>>()
  readonly #allocator: Allocator
  readonly #releaser: Releaser
  readonly #held = new HeldFds()
  readonly #pageSize: number
  readonly #newName: () => string
  #closing = false

  constructor (private readonly config: Config, private readonly log: Logger, private readonly journal: Journal, options: ServiceOptions = {}) {
    super()
    this.#pageSize = capacity().pageSize
    this.#newName = options.names ?? (() => newSegmentName(config.segmentPrefix))
    const uid = config.segmentOwner?.uid ?? process.geteuid?.() ?? 0
    this.#registry = new SegmentRegistry(this.#pageSize)
    const files = this.#files = new SegmentFiles(journal, this.#newName, uid, { mode: config.segmentMode, owner: config.segmentOwner, reserve: config.reserve }, this.#pageSize, log)
    this.#pool = new SegmentPool(config.poolBytes, config.poolIdleMs, this.#pageSize, {
      expected: (id) => files.expected(id),
      newName: this.#newName,
      drop: (e) => { files.discard(e.name, e, e.size) },
      dropNow: (name) => { files.dropNow(name) },
      spare: async (name, size) => { files.intend([name]); return await files.create(name, size) }
    }, log)
    // Half the process's descriptors at most: sockets, the journal and the runtime need the rest.
    const limit = openFileLimit()
    this.#handles = new Handles(Math.max(1, Math.min(config.maxOpenSegments, limit === undefined ? Infinity : Math.floor(limit / 2))))
    this.#owners = new Owners(journal, (root, owner) => this.#registry.holdsRoot(root, owner))
    this.#releaser = new Releaser(this.#registry, files, this.#pool, this.#handles, journal, this.#newName, this.#pageSize, this.#held, log)
    this.#exits = new ExitWatch((namespace, owner) => { this.#ownerExited(namespace, owner) }, log)
    // An eighth of the descriptors at most, beside transfers (half) and connections (a quarter).
    this.#maxBound = Math.max(1, Math.min(config.maxBoundProcesses, limit === undefined ? Infinity : Math.floor(limit / 8)))
    this.#allocator = new Allocator(config, this.#registry, this.#pool, files, this.#handles, this.#pageSize, this.#held)
    journal.attach({ records: () => this.#registry.values(), owners: () => this.#owners.snapshot() })
  }

  /**
   * Takes back what the journal knows and is still ours on /dev/shm, finishes or undoes what a crash interrupted
   * (files in limbo are unlinked if they are still ours), reclaims what expired meanwhile, then compacts. Nothing
   * that is not ours is adopted or unlinked: a symlink, a FIFO or another inode under a journaled name is forgotten.
   */
  recover (now = Date.now()): Recovery {
    const { records, limbo, owners, skipped } = this.journal.replay()
    const vanished: SegmentRecord[] = []
    for (const r of records) {
      const found = inspect(r.name, this.#files.expected(r))
      if (found.kind === 'ours') { this.#registry.add(r); continue }
      if (found.kind === 'foreign') this.log.warn({ segment: r.name, found: found.why }, 'a journaled segment is not ours any more; forgotten and left alone')
      vanished.push(r)
    }
    let cleaned = 0
    for (const [name, id] of limbo) {
      if (unlinkIfOurs(name, this.#files.expected(id ?? undefined))) cleaned++
      this.journal.settled(name)
    }
    this.#owners.restore(owners)
    this.#restoreBindings()
    if (vanished.length > 0) {
      this.journal.forgot(vanished.map((r) => r.name))
      this.emit('released', vanished, 'vanished')
    }
    const expired = this.expired(now)
    this.#release(expired, 'expired')
    this.journal.compact()
    const report = { recovered: this.#registry.count, vanished, cleaned, expired: expired.length, skipped }
    this.emit('recovered', report)
    return report
  }

  async create (request: CreateRequest, caller: Caller): Promise<CreateResult> {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
    // Checked with what the kernel said about the caller, before anything is claimed or made.
    const file = fileAccess(caller, request.share)
    const binding = request.release_on_exit === true ? this.#bindingOf(caller) : undefined
    const owner = ownerOf(caller)
    const { namespace } = request
    // Another key's root is 403 before anything else is said about the request.
    try {
      this.#owners.acquire(namespace, owner)
    } catch (err) {
      if (binding !== undefined) { closeFd(binding.fd); this.#binding-- }
      throw err
    }
    const keys = Object.keys(request.tensors)
    let pending = this.#pending.get(namespace)
    let made: SegmentRecord[] = []
    let reserved = false
    try {
      const planned = plan(request, this.config.maxSegmentBytes)
      for (const key of keys) {
        if (this.#registry.hasKey(namespace, key) || pending?.has(key) === true) {
          throw new errors.DuplicateKey(`tensors.${key}: the key is already registered in namespace "${namespace}"`)
        }
      }
      // Checked and taken in one turn: a create of the same namespace in flight shares this set.
      if (pending === undefined) this.#pending.set(namespace, pending = new Set())
      for (const key of keys) pending.add(key)
      reserved = true
      made = await this.#allocator.allocate(planned, namespace, request.ttl_seconds ?? this.config.defaultTtl, owner, { file, boundTo: binding?.ref })
      for (const r of made) this.#registry.add(r)
      if (binding !== undefined && owner !== null) this.#exits.bind(binding.ref, binding.fd, namespace, owner, made.length)
    } catch (err) {
      if (binding !== undefined) closeFd(binding.fd)
      if (err instanceof Refused) { this.emit('rejected', err.reason); throw err.error }
      // Only root (CAP_CHOWN) can give a file to another uid.
      if (file !== undefined && isSysError(err, 'EPERM')) throw new errors.OwnershipUnavailable(`the service cannot give segments to uid ${file.uid} (it runs without CAP_CHOWN)`)
      // ENOSPC from libc or from the journal's write: /dev/shm is full (answered as 507 by the error registry).
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') this.emit('rejected', 'capacity')
      throw err
    } finally {
      if (binding !== undefined) this.#binding--
      if (reserved && pending !== undefined) {
        for (const key of keys) pending.delete(key)
        if (pending.size === 0) this.#pending.delete(namespace)
      }
      this.#owners.settle(namespace, owner)
    }
    this.emit('created', made)
    return { namespace, segments: group(made) }
  }

  /** A segment by a name a client handed in: checked for this instance's shape of name before anything else. */
  find (name: string, caller: Caller, field = 'name'): SegmentRecord {
    return this.get(checkSegmentName(name, this.config.segmentPrefix, field), caller, field)
  }

  get (name: string, caller: Caller, field = 'name'): SegmentRecord {
    const record = this.#registry.get(name)
    // Another key's segment is answered exactly like an unknown one, and the name is not repeated back.
    if (record === undefined || !sees(caller, record.owner)) throw new errors.SegmentNotFound(`${field}: no segment of this service has that name`)
    return record
  }

  list (namespace: string | undefined, caller: Caller): SegmentRecord[] {
    return [...this.#registry.covered(namespace)].filter((r) => sees(caller, r.owner))
  }

  presence (record: SegmentRecord): Presence {
    const found = inspect(record.name, this.#files.expected(record)).kind
    return found === 'ours' ? 'present' : found === 'missing' ? 'missing' : 'replaced'
  }

  /** Opens a registered segment for I/O (see Handles); one that is gone or not ours is forgotten on the way. */
  open (record: SegmentRecord, writable: boolean): Handle {
    return this.#handles.open(record, writable, this.#files.expected(record), () => { this.forget([record], 'vanished') })
  }

  async release (name: string, caller: Caller): Promise<SegmentRecord> {
    const record = this.find(name, caller)
    await this.#releaseGrouped([record], 'client')
    return record
  }

  /** Reclaims records whose lease ran out (the sweeper's decision; they may have been renewed since it looked). */
  releaseExpired (records: SegmentRecord[], now = Date.now()): void {
    this.#release(records.filter((r) => this.#registry.get(r.name) === r && r.expiresAt !== null && r.expiresAt <= now), 'expired')
  }

  releaseNamespace (namespace: string, caller: Caller): number {
    const records = this.list(namespace, caller)
    this.#release(records, 'client')
    return records.length
  }

  /** Extends the lease of every segment in `namespace` (and below) by `ttl` seconds, or by each one's own TTL. */
  renew (namespace: string, ttl: number | undefined, caller: Caller): SegmentRecord[] {
    const now = Date.now()
    const records = this.list(namespace, caller)
    for (const r of records) {
      if (ttl !== undefined) r.ttl = ttl
      r.expiresAt = expiry(now, r.ttl)
    }
    // One line per renewal and owner (an admin renews others'), however many segments it covers.
    for (const owner of new Set(records.map((r) => r.owner))) this.journal.renewed(namespace, owner, ttl ?? null, now)
    return records
  }

  /** Records whose lease has run out by `now`. */
  expired (now = Date.now()): SegmentRecord[] {
    const out: SegmentRecord[] = []
    for (const r of this.#registry.values()) if (r.expiresAt !== null && r.expiresAt <= now) out.push(r)
    return out
  }

  /** Drops records without touching files: theirs are gone already, or are not ours any more. */
  forget (records: SegmentRecord[], reason: ReleaseReason): void {
    const known = records.filter((r) => this.#registry.get(r.name) === r)
    if (known.length === 0) return
    for (const r of known) {
      this.#registry.delete(r.name)
      this.#held.drop(r.name)
      this.log.warn({ segment: r.name, namespace: r.namespace, bytes: r.size }, 'segment vanished from /dev/shm')
    }
    this.journal.forgot(known.map((r) => r.name))
    this.#unbind(known)
    for (const root of new Set(known.map((r) => namespaceRoot(r.namespace)))) this.#owners.released(root)
    this.emit('released', known, reason)
  }

  /** Whether a file name is one of ours: a live segment, or a file in limbo (kept, being created or unlinked). */
  knows (name: string): boolean {
    return this.#registry.has(name) || this.journal.limbo.has(name)
  }

  /** Names that stop being ours from now until `stop` (see Journal.watchSettled). */
  watchSettled (): { names: Set<string>, stop: () => void } {
    return this.journal.watchSettled()
  }

  /** Unlinks kept segments that waited longer than TENSORSHM_POOL_IDLE, and released files that could not be checked before. */
  tidy (now = Date.now()): void {
    this.#pool.trim(now)
    this.#files.retryDeferred()
  }

  figures (): SegmentFigures {
    return {
      segments: this.#registry.count,
      bytes: this.#registry.bytes,
      heldBytes: this.#handles.heldPages + this.#files.unlinkingPages,
      pool: this.#pool.figures()
    }
  }

  /** Resolves once kept segments are zeroed and large files are unlinked: the background work is done. */
  async idle (): Promise<void> {
    await this.#pool.idle()
    await this.#files.drain()
  }

  /** Throws while the service is closing: nothing new is started then. */
  assertOpen (): void {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
  }

  /** Ready when not closing and /dev/shm answers. */
  assertReady (): void {
    this.assertOpen()
    capacity()
  }

  /**
   * Closing starts: no new allocations, and kept segments (nobody can reach them any more) go at once. A
   * supervisor such as `npm start` reports the exit a few ms after the signal, before in-flight requests finish.
   */
  stopAccepting (): void {
    this.#closing = true
    this.#pool.closeNow()
  }

  /** Releases everything (unless TENSORSHM_KEEP_ON_SHUTDOWN) once in-flight requests are done; returns how many. */
  async close (): Promise<number> {
    const released = this.#shutdown()
    await this.#pool.close()
    await this.#files.drain()
    this.#closeJournal()
    return released
  }

  /** The same, synchronously, for a process that must exit before `close` could finish (a second signal, a timeout). */
  closeNow (): void {
    this.#shutdown()
    this.#pool.closeNow()
    this.#files.drainNow()
    this.#closeJournal()
  }

  #shutdown (): number {
    this.#closing = true
    // Bindings stay in the journal: the next start watches those processes again.
    this.#exits.close()
    if (this.config.keepOnShutdown) return 0
    const all = this.list(undefined, OPERATOR)
    this.#release(all, 'shutdown')
    return all.length
  }

  #closeJournal (): void {
    this.#held.closeAll()
    this.journal.close(this.#registry.count === 0 && this.journal.limbo.size === 0)
  }

  /** A release whose journal line is written now: for the sweeper, shutdown and whole namespaces. */
  #release (records: SegmentRecord[], reason: ReleaseReason): void {
    if (records.length === 0) return
    const plan = this.#releaser.plan(records, reason === 'shutdown')
    this.#releaser.detach(plan)
    try {
      this.journal.released(records, plan.moves)
    } catch (err) {
      this.#releaser.unjournaled(plan, err)
    }
    this.#releaser.apply(plan)
    this.#released(records, reason)
  }

  /** The same, with the journal line in this event-loop turn's group write (see Journal): one client's release. */
  async #releaseGrouped (records: SegmentRecord[], reason: ReleaseReason): Promise<void> {
    const plan = this.#releaser.plan(records, false)
    this.#releaser.detach(plan)
    try {
      await this.journal.releasedLater(records, plan.moves)
    } catch (err) {
      this.#releaser.unjournaled(plan, err)
    }
    this.#releaser.apply(plan)
    this.#released(records, reason)
  }

  #released (records: SegmentRecord[], reason: ReleaseReason): void {
    this.#unbind(records)
    for (const root of new Set(records.map((r) => namespaceRoot(r.namespace)))) this.#owners.released(root)
    this.emit('released', records, reason)
  }

  /** release_on_exit: the calling process, pinned by a pidfd before anything is created. */
  #bindingOf (caller: Caller): { ref: ProcessRef, fd: number } {
    if (caller.kind !== 'uid') throw new errors.LocalCallerRequired('release_on_exit: only a caller on the Unix socket (TENSORSHM_SOCKET) has a process the service can watch')
    if (caller.pid <= 0) throw new errors.LocalCallerRequired('release_on_exit: the calling process is outside the service\'s pid namespace, so its exit cannot be recorded')
    // Each watched process holds a pidfd: as many processes as a user can fork must not use up the descriptors.
    const watching = this.#exits.size + this.#binding
    if (watching >= this.#maxBound) throw new errors.Busy(`release_on_exit: ${watching} processes are watched already, the most this service watches (TENSORSHM_MAX_BOUND_PROCESSES); retry shortly`)
    const fd = caller.pidfd()
    const ref = this.#exits.identify(fd, caller.pid)
    if (ref !== undefined) { this.#binding++; return { ref, fd } }
    closeFd(fd)
    throw new errors.LocalCallerRequired('release_on_exit: the calling process has exited already')
  }

  /** The process a namespace was bound to exited: its owner's segments there (and below) go. */
  #ownerExited (namespace: string, owner: string): void {
    const records = [...this.#registry.covered(namespace)].filter((r) => r.owner === owner)
    this.log.info({ namespace, owner, segments: records.length }, 'a process bound by release_on_exit exited; its namespace is released')
    this.#release(records, 'owner_exit')
  }

  /** After a restart: bound processes are watched again; namespaces whose process exited meanwhile go now. */
  #restoreBindings (): void {
    const gone = new Map<string, [string, string]>()
    for (const r of this.#registry.values()) {
      if (r.boundTo === undefined || r.owner === null) continue
      if (!this.#exits.restore(r.boundTo, r.namespace, r.owner)) gone.set(`${r.owner}\0${r.namespace}`, [r.namespace, r.owner])
    }
    for (const [namespace, owner] of gone.values()) this.#ownerExited(namespace, owner)
  }

  #unbind (records: SegmentRecord[]): void {
    for (const r of records) if (r.boundTo !== undefined) this.#exits.unbind(r.boundTo, r.namespace)
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
