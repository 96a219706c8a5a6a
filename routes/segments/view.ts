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
export function earliest (records: SegmentRecord[]): string | null {
  const times = records.map((r) => r.expiresAt).filter((t): t is number => t !== null)
  return times.length === 0 ? null : isoOrNull(Math.min(...times))
}

export function toCreateReply (result: CreateResult): Static<typeof CreateSegmentsReplySchema> {
  const segments = [...result.segments].map(([key, value]) => [key, Array.isArray(value) ? value.map(toDescriptor) : toDescriptor(value)] as const)
  const all = [...result.segments.values()].flat()
  // fromEntries defines own properties, so a key such as `__proto__` stays a key.
  return { namespace: result.namespace, expires_at: earliest(all), segments: Object.fromEntries(segments) }
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
