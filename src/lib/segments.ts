import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { createSegment, presence, unlinkQuietly, type Presence } from '../../native/segment.js'
import { isSysError } from '../../native/errors.js'
import { capacity } from '../../native/shm.js'
import type { Config } from './config.js'
import { errors } from './errors.js'
import { newSegmentName } from './names.js'
import { Registry, type SegmentRecord } from './registry.js'
import { checkSpec, type Spec, type TensorSpecInput } from './spec.js'

export type ReleaseReason = 'client' | 'expired' | 'shutdown' | 'vanished'

export interface CreateRequest {
  namespace: string
  tensors: Record<string, TensorSpecInput | TensorSpecInput[]>
}

export interface CreateResult {
  namespace: string
  segments: Record<string, SegmentRecord | SegmentRecord[]>
}

interface Planned { key: string, index: number | null, spec: Spec }

interface Events {
  created: [records: SegmentRecord[]]
  released: [records: SegmentRecord[], reason: ReleaseReason]
}

/** Segment lifecycle: policy over the registry, files through the native layer. Knows nothing of HTTP. */
export class SegmentService extends EventEmitter<Events> {
  readonly registry = new Registry()
  /** namespace\0key pairs being created right now, so two requests cannot both take a key. */
  readonly #pending = new Set<string>()
  #closing = false

  constructor (private readonly config: Config, private readonly log: FastifyBaseLogger) {
    super()
  }

  async create (request: CreateRequest): Promise<CreateResult> {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
    const { namespace } = request
    const planned = this.#plan(request)
    const claimed = Object.keys(request.tensors).map((key) => `${namespace}\0${key}`)
    for (const [i, key] of Object.keys(request.tensors).entries()) {
      if (this.registry.hasKey(namespace, key) || this.#pending.has(claimed[i] as string)) {
        throw new errors.DuplicateKey(`tensors.${key}: the key is already registered in namespace "${namespace}"`)
      }
    }
    for (const c of claimed) this.#pending.add(c)
    const made: SegmentRecord[] = []
    try {
      for (const item of planned) made.push(await this.#createOne(namespace, item))
    } catch (err) {
      for (const r of made) unlinkQuietly(r.name)
      throw this.#mapCreateError(err)
    } finally {
      for (const c of claimed) this.#pending.delete(c)
    }
    for (const r of made) this.registry.add(r)
    this.emit('created', made)
    this.log.debug({ namespace, segments: made.length }, 'segments created')
    return { namespace, segments: group(made) }
  }

  /** Ready when not closing and /dev/shm answers. */
  assertReady (): void {
    if (this.#closing) throw new errors.ShuttingDown('the service is shutting down')
    capacity()
  }

  get (name: string): SegmentRecord {
    const record = this.registry.get(name)
    if (record === undefined) throw new errors.SegmentNotFound(`name: no segment "${name}" is registered`)
    return record
  }

  presence (record: SegmentRecord): Presence {
    return presence(record.name, record)
  }

  list (namespace?: string): SegmentRecord[] {
    return [...this.registry.covered(namespace)]
  }

  release (name: string, reason: ReleaseReason = 'client'): SegmentRecord {
    const record = this.get(name)
    this.#unlink([record], reason)
    return record
  }

  releaseNamespace (namespace: string, reason: ReleaseReason = 'client'): number {
    const records = this.list(namespace)
    this.#unlink(records, reason)
    return records.length
  }

  /** Stops new allocations, then releases everything unless configured to keep it for the next start. */
  beginShutdown (): void {
    this.#closing = true
  }

  shutdown (): number {
    this.#closing = true
    if (this.config.keepOnShutdown) return 0
    const records = this.list()
    this.#unlink(records, 'shutdown')
    return records.length
  }

  #unlink (records: SegmentRecord[], reason: ReleaseReason): void {
    if (records.length === 0) return
    for (const r of records) {
      this.registry.delete(r.name)
      try {
        // Only a name whose inode is still ours is unlinked: a look-alike someone put there is not our file.
        if (presence(r.name, r) === 'present') unlinkQuietly(r.name)
      } catch (err) {
        this.log.warn({ err, segment: r.name }, 'could not unlink a released segment')
      }
    }
    this.emit('released', records, reason)
  }

  #plan (request: CreateRequest): Planned[] {
    const planned: Planned[] = []
    for (const [key, value] of Object.entries(request.tensors)) {
      if (Array.isArray(value)) {
        value.forEach((spec, index) => planned.push({ key, index, spec: checkSpec(spec, `tensors.${key}[${index}]`, this.config.maxSegmentBytes) }))
      } else {
        planned.push({ key, index: null, spec: checkSpec(value, `tensors.${key}`, this.config.maxSegmentBytes) })
      }
    }
    return planned
  }

  async #createOne (namespace: string, { key, index, spec }: Planned): Promise<SegmentRecord> {
    const size = Math.max(spec.nbytes, 1)
    // tmpfs takes a sparse file of any size; refuse here what could only end as SIGBUS in a client later.
    const { free } = capacity()
    if (size > free) {
      throw new errors.InsufficientStorage(`tensors.${key}${index === null ? '' : `[${index}]`}: ${size} bytes do not fit in the ${free} bytes free on /dev/shm`)
    }
    for (let attempt = 0; ; attempt++) {
      const name = newSegmentName(this.config.segmentPrefix)
      try {
        const created = await createSegment(name, { size, mode: this.config.segmentMode, owner: this.config.segmentOwner, reserve: false })
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
          createdAt: Date.now(),
          expiresAt: null,
          owner: null
        }
      } catch (err) {
        // 64 random bits collide only with a file someone placed on purpose: draw again, a few times.
        if (!isSysError(err, 'EEXIST') || attempt >= 3) throw err
      }
    }
  }

  #mapCreateError (err: unknown): unknown {
    if (isSysError(err, 'ENOSPC')) return new errors.InsufficientStorage('/dev/shm has no room for the requested segments')
    return err
  }
}

function group (records: SegmentRecord[]): CreateResult['segments'] {
  const out: CreateResult['segments'] = {}
  for (const r of records) {
    if (r.index === null) out[r.key] = r
    else ((out[r.key] ??= []) as SegmentRecord[])[r.index] = r
  }
  return out
}
