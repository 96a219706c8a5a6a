import type { Static } from 'typebox'
import { PyDict, PyTuple, ShmObject } from '../../src/codecs/pickle.js'
import type { SegmentRecord } from '../../src/segments/registry.js'
import type { CreateResult } from '../../src/segments/service.js'
import type { CreateSegmentsReplySchema, DescriptorSchema, SegmentInfoSchema } from './schema.js'

type Descriptor = Static<typeof DescriptorSchema>
type Info = Static<typeof SegmentInfoSchema>

export const toDescriptor = (r: SegmentRecord): Descriptor => ({ name: r.name, shape: r.shape, dtype: r.dtype.name, nbytes: r.nbytes })

export const toInfo = (r: SegmentRecord): Info => ({
  ...toDescriptor(r),
  namespace: r.namespace,
  key: r.key,
  index: r.index,
  size: r.size,
  created_at: new Date(r.createdAt).toISOString(),
  ttl_seconds: r.ttl,
  expires_at: isoOrNull(r.expiresAt)
})

export const isoOrNull = (ms: number | null): string | null => ms === null ? null : new Date(ms).toISOString()

/** The earliest expiry among records, or null when none expires. */
export function earliest (records: Iterable<SegmentRecord>): string | null {
  let first = Infinity
  for (const r of records) if (r.expiresAt !== null && r.expiresAt < first) first = r.expiresAt
  return first === Infinity ? null : isoOrNull(first)
}

type Descriptors = Static<typeof CreateSegmentsReplySchema>['segments']

export function toCreateReply (result: CreateResult): Static<typeof CreateSegmentsReplySchema> {
  // No prototype: a client's key such as `__proto__` is assigned as an own key like any other.
  const segments: Descriptors = Object.create(null)
  let first = Infinity
  for (const [key, value] of result.segments) {
    if (Array.isArray(value)) {
      segments[key] = value.map(toDescriptor)
      for (const r of value) if (r.expiresAt !== null && r.expiresAt < first) first = r.expiresAt
    } else {
      segments[key] = toDescriptor(value)
      if (value.expiresAt !== null && value.expiresAt < first) first = value.expiresAt
    }
  }
  return { namespace: result.namespace, expires_at: first === Infinity ? null : isoOrNull(first), segments }
}

/**
 * What NOS's `RegisterSystemSharedMemory` answers, as values the pickle writer takes: `{key: SharedMemoryNumpyObject
 * | [...]}`, each object's state exactly NOS's `{name, shape (a tuple), dtype}`.
 */
export function toRegistrationMap (result: CreateResult): PyDict {
  const object = (r: SegmentRecord): ShmObject =>
    new ShmObject(new PyDict([['name', r.name], ['shape', new PyTuple([...r.shape])], ['dtype', r.dtype.name]]))
  return new PyDict([...result.segments].map(([key, value]) => [key, Array.isArray(value) ? value.map(object) : object(value)]))
}
