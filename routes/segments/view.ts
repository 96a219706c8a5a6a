import type { Static } from 'typebox'
import type { SegmentRecord } from '../../src/lib/registry.js'
import type { CreateResult } from '../../src/lib/segments.js'
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
  created_at: new Date(r.createdAt).toISOString()
})

export function toCreateReply (result: CreateResult): Static<typeof CreateSegmentsReplySchema> {
  const segments: Record<string, Descriptor | Descriptor[]> = {}
  for (const [key, value] of Object.entries(result.segments)) {
    segments[key] = Array.isArray(value) ? value.map(toDescriptor) : toDescriptor(value)
  }
  return { namespace: result.namespace, segments }
}
