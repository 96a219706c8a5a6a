import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from './error-responses.js'

const Count = Type.Integer({ minimum: 0 })
const ByReason = (keys: string[]) => Type.Object(Object.fromEntries(keys.map((k) => [k, Count])))
const Leak = Type.Object({ segments: Count, bytes: Count })

export const StatsSchema = Type.Object({
  segments: Count,
  bytes: Count,
  allocations: Count,
  allocation_rate: Type.Number({ description: 'Segments per second over the sliding window.' }),
  allocation_rate_exceeded: Count,
  releases: ByReason(['client', 'expired', 'shutdown', 'vanished', 'owner_exit']),
  reclaimed: ByReason(['expired', 'vanished']),
  leaked: Type.Object({ expired: Leak, vanished: Leak, orphan: Leak }, { description: 'expired: past the lease now; vanished and orphan: as the last scan of /dev/shm found them (orphan bytes are the pages those files hold).' }),
  released_held_bytes: Type.Integer({ minimum: 0, description: 'Pages of released segments still held: open by a transfer or decode, or being unlinked. They count against TENSORSHM_MAX_TOTAL_BYTES.' }),
  pool: Type.Object({ segments: Count, bytes: Count, pages: Count, hits: Count, misses: Count }, { description: 'Released segments kept for reuse (TENSORSHM_POOL_BYTES).' }),
  quota_rejections: ByReason(['total_bytes', 'segments', 'namespace_segments', 'capacity']),
  shm: Type.Object({ size_bytes: Count, free_bytes: Count }),
  limits: Type.Object({
    max_segment_bytes: Count,
    max_total_bytes: Type.Integer({ description: '0: no limit but /dev/shm.' }),
    max_segments: Count,
    max_segments_per_namespace: Count,
    default_ttl_seconds: Type.Integer({ description: '0: no expiry.' }),
    max_allocation_rate: Type.Number()
  })
}, { title: 'Stats' })

const stats: FastifyPluginAsyncTypebox = async (fastify) => {
  const { metrics, config } = fastify
  fastify.get('/stats', {
    schema: {
      tags: ['metrics'],
      summary: 'The metrics as JSON, for people',
      operationId: 'stats',
      description: 'The same figures as /metrics, read from the same counters.',
      response: { 200: { ...StatsSchema, description: 'Counts, leaks, capacity and limits.' }, ...errorResponses() }
    }
  }, async () => {
    const f = metrics.figures()
    const { tally } = metrics
    return {
      segments: f.segments,
      bytes: f.bytes,
      allocations: tally.allocations,
      allocation_rate: f.rate,
      allocation_rate_exceeded: tally.rateExceeded,
      releases: { ...tally.releases },
      reclaimed: { ...tally.reclaimed },
      leaked: { expired: f.expired, vanished: f.vanished, orphan: f.orphan },
      released_held_bytes: f.heldBytes,
      pool: { ...f.pool },
      quota_rejections: { ...tally.quotaRejections },
      shm: { size_bytes: f.shm.total, free_bytes: f.shm.free },
      limits: {
        max_segment_bytes: config.maxSegmentBytes,
        max_total_bytes: config.maxTotalBytes,
        max_segments: config.maxSegments,
        max_segments_per_namespace: config.maxSegmentsPerNamespace,
        default_ttl_seconds: config.defaultTtl,
        max_allocation_rate: config.maxAllocationRate
      }
    }
  })
}

export default stats
