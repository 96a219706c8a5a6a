import type { FastifyBaseLogger } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { capacity } from '../../native/shm.js'
import type { Config } from './config.js'
import { RateMeter } from './rate.js'
import type { ReleaseReason, SegmentService } from './segments.js'
import { scan } from './sweeper.js'

const REASONS: ReleaseReason[] = ['client', 'expired', 'shutdown', 'vanished']
const LEAKS = ['expired', 'vanished', 'orphan'] as const
const QUOTAS = ['total_bytes', 'namespace_segments', 'capacity'] as const
const SIZE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** Every figure the service reports; no label carries a namespace or a segment name. */
export function createMetrics (service: SegmentService, config: Config, log: FastifyBaseLogger) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // These three are gauges with a counter's `_total` suffix, which `promtool check metrics` rejects.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  const meter = new RateMeter(config.allocationRateWindowMs)
  const on = { registers: [registry] }
  const leaks = () => {
    const s = scan(service, config.segmentPrefix)
    const sum = (xs: Array<{ size: number }>) => xs.reduce((n, x) => n + x.size, 0)
    return { expired: [s.expired.length, sum(s.expired)], vanished: [s.vanished.length, sum(s.vanished)], orphan: [s.orphans.length, sum(s.orphans)] }
  }

  const gauge = (name: string, help: string, read: () => number) => new Gauge({ ...on, name, help, collect () { this.set(read()) } })

  gauge('tensorshm_segments', 'Live segments this instance holds.', () => service.registry.count)
  gauge('tensorshm_segment_bytes', 'Bytes of the live segments (file sizes).', () => service.registry.bytes)
  const allocations = new Counter({ ...on, name: 'tensorshm_allocations_total', help: 'Segments created.' })
  const releases = new Counter({ ...on, name: 'tensorshm_releases_total', help: 'Segments released, by reason.', labelNames: ['reason'] })
  const reclaimed = new Counter({ ...on, name: 'tensorshm_reclaimed_total', help: 'Leaked segments reclaimed (lease expired) or dropped (file vanished).', labelNames: ['reason'] })
  gauge('tensorshm_allocation_rate', 'Segments created per second over the sliding window.', () => meter.rate())
  const exceeded = new Counter({ ...on, name: 'tensorshm_allocation_rate_exceeded_total', help: 'Create requests made while the allocation rate was above TENSORSHM_MAX_ALLOCATION_RATE.' })
  // The registry serialises metrics in registration order: the first of the pair scans for both.
  const leakedBytes = new Gauge({ name: 'tensorshm_leaked_bytes', help: 'Bytes of the leaked segments, by kind.', labelNames: ['kind'], registers: [] })
  const leakedSegments = new Gauge({
    ...on,
    name: 'tensorshm_leaked_segments',
    help: 'Segments leaked: past their lease, vanished from /dev/shm, or orphan files with this prefix.',
    labelNames: ['kind'],
    collect () {
      for (const [kind, [n, bytes]] of Object.entries(leaks())) { this.set({ kind }, n ?? 0); leakedBytes.set({ kind }, bytes ?? 0) }
    }
  })
  registry.registerMetric(leakedBytes)
  gauge('tensorshm_shm_size_bytes', 'Size of the /dev/shm file system.', () => capacity().total)
  gauge('tensorshm_shm_free_bytes', 'Free bytes on /dev/shm.', () => capacity().free)
  gauge('tensorshm_pool_segments', 'Released segments kept for reuse.', () => service.pool.count)
  gauge('tensorshm_pool_bytes', 'Bytes of the released segments kept for reuse.', () => service.pool.bytes)
  const tally = (name: string, help: string, read: () => number) => {
    let seen = 0
    return new Counter({ ...on, name, help, collect () { const now = read(); this.inc(now - seen); seen = now } })
  }
  tally('tensorshm_pool_hits_total', 'Allocations served by a kept segment.', () => service.pool.hits)
  tally('tensorshm_pool_misses_total', 'Allocations that found no kept segment of their size.', () => service.pool.misses)
  const rejections = new Counter({ ...on, name: 'tensorshm_quota_rejections_total', help: 'Create requests refused with 507, by reason.', labelNames: ['reason'] })
  const decodeBytes = new Counter({ ...on, name: 'tensorshm_decode_bytes_total', help: 'Tensor bytes sent by /v1/decode.' })
  const decodeSeconds = new Histogram({ ...on, name: 'tensorshm_decode_duration_seconds', help: 'Time to stream a /v1/decode answer.', buckets: SIZE_BUCKETS })
  const transferBytes = new Counter({ ...on, name: 'tensorshm_transfer_bytes_total', help: 'Tensor bytes moved by /v1/segments/{name}/data.', labelNames: ['direction'] })
  const transferSeconds = new Histogram({ ...on, name: 'tensorshm_transfer_duration_seconds', help: 'Time to move one tensor through /v1/segments/{name}/data.', labelNames: ['direction'], buckets: SIZE_BUCKETS })
  const http = new Histogram({ ...on, name: 'tensorshm_http_request_duration_seconds', help: 'HTTP request durations by route pattern and status.', labelNames: ['method', 'route', 'status_code'] })

  for (const reason of REASONS) releases.inc({ reason }, 0)
  for (const reason of ['expired', 'vanished']) reclaimed.inc({ reason }, 0)
  for (const reason of QUOTAS) rejections.inc({ reason }, 0)
  for (const kind of LEAKS) { leakedSegments.set({ kind }, 0); leakedBytes.set({ kind }, 0) }
  for (const direction of ['read', 'write']) transferBytes.inc({ direction }, 0)

  let lastWarning = -Infinity
  service.on('created', (records) => {
    const namespace = records[0]?.namespace ?? ''
    allocations.inc(records.length)
    meter.add(records.length, namespace)
    const rate = meter.rate()
    if (rate <= config.maxAllocationRate) return
    exceeded.inc()
    // One warning per window is enough to find the client; the counter records every occurrence.
    if (Date.now() - lastWarning < config.allocationRateWindowMs) return
    lastWarning = Date.now()
    log.warn({ namespace, rate, threshold: config.maxAllocationRate, busiest: Object.fromEntries(meter.top(3)) },
      'allocation rate is high: check for variable input shapes with every request')
  })
  service.on('released', (records, reason) => {
    releases.inc({ reason }, records.length)
    if (reason === 'expired' || reason === 'vanished') reclaimed.inc({ reason }, records.length)
  })
  service.on('rejected', (reason) => { rejections.inc({ reason }) })

  return {
    registry,
    rate: () => meter.rate(),
    leaks,
    decoded: (bytes: number, seconds: number) => { decodeBytes.inc(bytes); decodeSeconds.observe(seconds) },
    transferred: (direction: 'read' | 'write', bytes: number, seconds: number) => { transferBytes.inc({ direction }, bytes); transferSeconds.observe({ direction }, seconds) },
    request: (method: string, route: string, status: number, seconds: number) => { http.observe({ method, route, status_code: String(status) }, seconds) }
  }
}

export type Metrics = ReturnType<typeof createMetrics>
