import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { capacity } from '../native/shm.js'
import { errorResponses } from './errors.js'

const Count = Type.Integer({ minimum: 0 })
const ByReason = (keys: string[]) => Type.Object(Object.fromEntries(keys.map((k) => [k, Count])))
const Leak = Type.Object({ segments: Count, bytes: Count })

export const StatsSchema = Type.Object({
  segments: Count,
  bytes: Count,
  allocations: Count,
  allocation_rate: Type.Number({ description: 'Segments per second over the sliding window.' }),
  allocation_rate_exceeded: Count,
  releases: ByReason(['client', 'expired', 'shutdown', 'vanished']),
  reclaimed: ByReason(['expired', 'vanished']),
  leaked: Type.Object({ expired: Leak, vanished: Leak, orphan: Leak }),
  quota_rejections: ByReason(['total_bytes', 'namespace_segments', 'capacity']),
  shm: Type.Object({ size_bytes: Count, free_bytes: Count }),
  limits: Type.Object({
    max_segment_bytes: Count,
    max_total_bytes: Type.Integer({ description: '0: no limit but /dev/shm.' }),
    max_segments_per_namespace: Count,
    default_ttl_seconds: Type.Integer({ description: '0: no expiry.' }),
    max_allocation_rate: Type.Number()
  })
}, { title: 'Stats' })

const stats: FastifyPluginAsyncTypebox = async (fastify) => {
  const { metrics, segments, config } = fastify
  /** Counter values by their one label (or under "" without labels), read from the Prometheus registry itself. */
  const counter = async (name: string): Promise<Record<string, number>> => {
    const values = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? []
    return Object.fromEntries(values.map((v) => [String(Object.values(v.labels)[0] ?? ''), v.value]))
  }

  fastify.get('/stats', {
    schema: {
      tags: ['metrics'],
      summary: 'The metrics as JSON, for people',
      operationId: 'stats',
      response: { 200: { ...StatsSchema, description: 'Counts, leaks, capacity and limits.' }, ...errorResponses() }
    }
  }, async () => {
    const leaks = metrics.leaks()
    const leak = (kind: keyof typeof leaks) => ({ segments: leaks[kind][0] ?? 0, bytes: leaks[kind][1] ?? 0 })
    const shm = capacity()
    return {
      segments: segments.registry.count,
      bytes: segments.registry.bytes,
      allocations: (await counter('tensorshm_allocations_total'))[''] ?? 0,
      allocation_rate: metrics.rate(),
      allocation_rate_exceeded: (await counter('tensorshm_allocation_rate_exceeded_total'))[''] ?? 0,
      releases: await counter('tensorshm_releases_total') as Record<'client' | 'expired' | 'shutdown' | 'vanished', number>,
      reclaimed: await counter('tensorshm_reclaimed_total') as Record<'expired' | 'vanished', number>,
      leaked: { expired: leak('expired'), vanished: leak('vanished'), orphan: leak('orphan') },
      quota_rejections: await counter('tensorshm_quota_rejections_total') as Record<'total_bytes' | 'namespace_segments' | 'capacity', number>,
      shm: { size_bytes: shm.total, free_bytes: shm.free },
      limits: {
        max_segment_bytes: config.maxSegmentBytes,
        max_total_bytes: config.maxTotalBytes,
        max_segments_per_namespace: config.maxSegmentsPerNamespace,
        default_ttl_seconds: config.defaultTtl,
        max_allocation_rate: config.maxAllocationRate
      }
    }
  })
}

export default stats
