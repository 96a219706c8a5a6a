import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { capacity } from '../../native/shm.js'
import type { Config } from '../config.js'
import type { Logger } from '../segments/logger.js'
import type { QuotaReason } from '../segments/plan.js'
import { RateMeter } from './rate.js'
import type { ReleaseReason, SegmentService } from '../segments/service.js'
import type { Sweeper } from '../segments/sweeper.js'

const REASONS: ReleaseReason[] = ['client', 'expired', 'shutdown', 'vanished', 'owner_exit']
const QUOTAS: QuotaReason[] = ['total_bytes', 'segments', 'namespace_segments', 'capacity']
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

const zeros = <K extends string>(keys: readonly K[]): Record<K, number> => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>

/** Counts kept as plain numbers: /metrics and /v1/stats both read these, so they never disagree. */
export class Tally {
  allocations = 0
  rateExceeded = 0
  releases = zeros(REASONS)
  reclaimed = zeros(['expired', 'vanished'] as const)
  quotaRejections = zeros(QUOTAS)
  journalSkipped = 0
}

/** Every figure the service reports, in one place; no label carries a namespace or a segment name. */
export function createMetrics (service: SegmentService, sweeper: Sweeper, config: Config, log: Logger) {
  const tally = new Tally()
  const meter = new RateMeter(config.allocationRateWindowMs)
  const figures = () => {
    const s = service.figures()
    const expired = service.expired()
    const shm = capacity()
    return { ...s, expired: { segments: expired.length, bytes: expired.reduce((n, r) => n + r.size, 0) }, ...sweeper.leaks, shm, rate: meter.rate() }
  }

  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // These three are gauges with a counter's `_total` suffix, which `promtool check metrics` rejects.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  const on = { registers: [registry] }
  const gauge = (name: string, help: string, read: () => number) => new Gauge({ ...on, name, help, collect () { this.set(read()) } })
  // Counters whose value lives in the tally: the exposition reads it, never the other way round.
  const counter = (name: string, help: string, read: () => number) => new Counter({ ...on, name, help, collect () { this.reset(); this.inc(read()) } })
  const labelled = (name: string, help: string, label: string, read: () => Record<string, number>) =>
    new Counter({ ...on, name, help, labelNames: [label], collect () { this.reset(); for (const [k, v] of Object.entries(read())) this.inc({ [label]: k }, v) } })

  gauge('tensorshm_segments', 'Live segments this instance holds.', () => service.figures().segments)
  gauge('tensorshm_segment_bytes', 'Bytes of the live segments (file sizes).', () => service.figures().bytes)
  counter('tensorshm_allocations_total', 'Segments created.', () => tally.allocations)
  labelled('tensorshm_releases_total', 'Segments released, by reason.', 'reason', () => tally.releases)
  labelled('tensorshm_reclaimed_total', 'Leaked segments reclaimed (lease expired) or dropped (file vanished).', 'reason', () => tally.reclaimed)
  gauge('tensorshm_allocation_rate', 'Segments created per second over the sliding window.', () => meter.rate())
  counter('tensorshm_allocation_rate_exceeded_total', 'Create requests made while the allocation rate was above TENSORSHM_MAX_ALLOCATION_RATE.', () => tally.rateExceeded)
  const leakedBytes = new Gauge({ name: 'tensorshm_leaked_bytes', help: 'Bytes of the leaked segments, by kind (orphans: the pages they hold).', labelNames: ['kind'], registers: [] })
  // The registry serialises metrics in registration order: the first of the pair reads the figures for both.
  new Gauge({ // eslint-disable-line no-new
    ...on,
    name: 'tensorshm_leaked_segments',
    help: 'Segments leaked: past their lease, vanished from /dev/shm, or orphan files with this prefix (as the last scan found them).',
    labelNames: ['kind'],
    collect () {
      const f = figures()
      for (const kind of ['expired', 'vanished', 'orphan'] as const) { this.set({ kind }, f[kind].segments); leakedBytes.set({ kind }, f[kind].bytes) }
    }
  })
  registry.registerMetric(leakedBytes)
  gauge('tensorshm_released_held_bytes', 'Pages of released segments still held: open by a transfer or decode, or being unlinked.', () => service.figures().heldBytes)
  gauge('tensorshm_shm_size_bytes', 'Size of the /dev/shm file system.', () => capacity().total)
  gauge('tensorshm_shm_free_bytes', 'Free bytes on /dev/shm.', () => capacity().free)
  gauge('tensorshm_pool_segments', 'Released segments kept for reuse.', () => service.figures().pool.segments)
  gauge('tensorshm_pool_bytes', 'Bytes of the released segments kept for reuse.', () => service.figures().pool.bytes)
  counter('tensorshm_pool_hits_total', 'Allocations served by a kept segment.', () => service.figures().pool.hits)
  counter('tensorshm_pool_misses_total', 'Allocations that found no kept segment of their size.', () => service.figures().pool.misses)
  labelled('tensorshm_quota_rejections_total', 'Create requests refused with 507, by reason.', 'reason', () => tally.quotaRejections)
  counter('tensorshm_journal_skipped_total', 'Journal lines or records skipped at the last start because they did not check out.', () => tally.journalSkipped)
  const decodeBytes = new Counter({ ...on, name: 'tensorshm_decode_bytes_total', help: 'Tensor bytes sent by /v1/decode.' })
  const decodeSeconds = new Histogram({ ...on, name: 'tensorshm_decode_duration_seconds', help: 'Time to stream a /v1/decode answer.', buckets: DURATION_BUCKETS })
  const transferBytes = new Counter({ ...on, name: 'tensorshm_transfer_bytes_total', help: 'Tensor bytes moved by /v1/segments/{name}/data.', labelNames: ['direction'] })
  const transferSeconds = new Histogram({ ...on, name: 'tensorshm_transfer_duration_seconds', help: 'Time to move one tensor through /v1/segments/{name}/data.', labelNames: ['direction'], buckets: DURATION_BUCKETS })
  const http = new Histogram({ ...on, name: 'tensorshm_http_request_duration_seconds', help: 'HTTP request durations by route pattern and status.', labelNames: ['method', 'route', 'status_code'] })
  for (const direction of ['read', 'write']) transferBytes.inc({ direction }, 0)
  // One child per method, route pattern and status, found without prom-client hashing the labels on every request.
  // Bounded: Node's parser knows a few dozen methods, routes are patterns (or "unmatched"), statuses are ours.
  const series = new Map<string, Histogram.Internal<'method' | 'route' | 'status_code'>>()
  const requestSeries = (method: string, route: string, status: number): Histogram.Internal<'method' | 'route' | 'status_code'> => {
    const key = `${method} ${status} ${route}`
    let child = series.get(key)
    if (child === undefined) {
      child = http.labels({ method, route, status_code: String(status) })
      series.set(key, child)
    }
    return child
  }

  let lastWarning = -Infinity
  service.on('created', (records) => {
    const namespace = records[0]?.namespace ?? ''
    tally.allocations += records.length
    meter.add(records.length, namespace)
    const rate = meter.rate()
    if (rate <= config.maxAllocationRate) return
    tally.rateExceeded++
    // One warning per window is enough to find the client; the counter records every occurrence.
    if (Date.now() - lastWarning < config.allocationRateWindowMs) return
    lastWarning = Date.now()
    log.warn({ namespace, rate, threshold: config.maxAllocationRate, busiest: Object.fromEntries(meter.top(3)) },
      'allocation rate is high: check for variable input shapes with every request')
  })
  service.on('released', (records, reason) => {
    tally.releases[reason] += records.length
    if (reason === 'expired' || reason === 'vanished') tally.reclaimed[reason] += records.length
  })
  service.on('rejected', (reason) => { tally.quotaRejections[reason]++ })
  service.on('recovered', ({ skipped }) => { tally.journalSkipped = skipped })

  return {
    registry,
    tally,
    figures,
    decoded: (bytes: number, seconds: number) => { decodeBytes.inc(bytes); decodeSeconds.observe(seconds) },
    transferred: (direction: 'read' | 'write', bytes: number, seconds: number) => { transferBytes.inc({ direction }, bytes); transferSeconds.observe({ direction }, seconds) },
    request: (method: string, route: string, status: number, seconds: number) => { requestSeries(method, route, status).observe(seconds) }
  }
}

export type Metrics = ReturnType<typeof createMetrics>
