import t from 'tap'
import { spawnSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { RateMeter } from '../src/observability/rate.js'
import { build, captureWarnings, checkNoLeftovers, post, suitePrefix } from './helpers/build.js'

const prefix = suitePrefix('metrics')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_SWEEP_INTERVAL: '3600' }

/** Samples of the exposition, `name{labels}` to value. */
async function scrape (app: FastifyInstance): Promise<Map<string, number>> {
  const res = await app.inject({ url: '/metrics' })
  const out = new Map<string, number>()
  for (const line of res.body.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m?.[1] !== undefined) out.set(m[1], Number(m[2]))
  }
  return out
}

t.test('the metrics move with create, release and expiry; no label carries a name', async (t) => {
  const app = await build(t, env)
  const m0 = await scrape(app)
  t.equal(m0.get('tensorshm_segments'), 0)
  t.equal(m0.get('tensorshm_releases_total{reason="expired"}'), 0, 'every reason is exported from the start')
  t.equal(m0.get('tensorshm_leaked_segments{kind="orphan"}'), 0)
  t.ok((m0.get('tensorshm_shm_size_bytes') ?? 0) > 0)
  t.ok(m0.has('process_cpu_user_seconds_total'), 'default process metrics')

  const a = await post(app, 'm/a', { x: { shape: [1000], dtype: 'uint8' }, y: [{ shape: [10], dtype: 'float32' }, { shape: [0], dtype: 'uint8' }] })
  t.equal(a.statusCode, 201)
  const m1 = await scrape(app)
  t.equal(m1.get('tensorshm_segments'), 3)
  t.equal(m1.get('tensorshm_segment_bytes'), 1000 + 40 + 1)
  t.equal(m1.get('tensorshm_allocations_total'), 3)
  t.equal(m1.get('tensorshm_allocation_rate'), 3 / 10, 'three allocations over a 10 s window')

  await app.inject({ method: 'DELETE', url: `/v1/segments/${a.json().segments.x.name}` })
  const m2 = await scrape(app)
  t.equal(m2.get('tensorshm_segments'), 2)
  t.equal(m2.get('tensorshm_releases_total{reason="client"}'), 1)

  await post(app, 'm/short', { z: { shape: [64], dtype: 'uint8' } }, { ttl_seconds: 1 })
  const later = Date.now() + 1500
  // Past the lease, before a sweep: counted as leaked.
  t.same(app.metrics.figures().expired, { segments: 0, bytes: 0 }, 'not yet expired')
  t.equal(app.segments.expired(later).length, 1)
  t.equal((await app.sweeper.sweep(later)).reclaimed, 1)
  const m3 = await scrape(app)
  t.equal(m3.get('tensorshm_releases_total{reason="expired"}'), 1)
  t.equal(m3.get('tensorshm_reclaimed_total{reason="expired"}'), 1)

  const res = await app.inject({ url: '/metrics' })
  t.notMatch(res.body, new RegExp(prefix), 'no segment name in any label')
  t.notMatch(res.body, /m\/a|m\/short/, 'no namespace in any label')
  t.match(res.body, /tensorshm_http_request_duration_seconds_count\{method="POST",route="\/v1\/segments",status_code="201"\} 2/)
  t.match(res.body, /route="\/v1\/segments\/:name"/, 'routes are patterns')

  const stats = await app.inject({ url: '/v1/stats' })
  t.match(stats.json(), {
    segments: 2,
    bytes: 41,
    allocations: 4,
    releases: { client: 1, expired: 1, shutdown: 0, vanished: 0 },
    reclaimed: { expired: 1, vanished: 0 },
    leaked: { expired: { segments: 0, bytes: 0 }, vanished: { segments: 0, bytes: 0 }, orphan: { segments: 0, bytes: 0 } },
    limits: { default_ttl_seconds: 600, max_allocation_rate: 10 }
  })
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=m' })
})

t.test('a burst of variable-shape allocations moves the rate gauge and the exceeded counter, and warns naming the namespace', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_LOG_LEVEL: 'warn', TENSORSHM_MAX_ALLOCATION_RATE: '2' })
  const logs = captureWarnings(app)
  for (let i = 0; i < 30; i++) {
    const r = await post(app, `burst/req-${i}`, { x: { shape: [i + 1, 3], dtype: 'float32' } })
    t.equal(r.statusCode, 201)
  }
  const m = await scrape(app)
  t.equal(m.get('tensorshm_allocation_rate'), 3)
  t.equal(m.get('tensorshm_allocation_rate_exceeded_total'), 10, 'every request after the 20th (rate > 2/s over 10 s)')
  const warnings = logs.filter((l) => l.includes('allocation rate is high'))
  t.equal(warnings.length, 1, 'one warning per window')
  t.match(warnings[0], /"namespace":"burst\/req-20".*"busiest":\{"burst\/req-/)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=burst' })
})

t.test('a client allocating under a new namespace every time cannot grow the rate meter, and still stands out', (t) => {
  const meter = new RateMeter(10_000, 20, 0)
  for (let i = 0; i < 50_000; i++) meter.add(1, `client-${i}`, 1)
  for (let i = 0; i < 500; i++) meter.add(1, 'busy/obj', 2)
  t.equal(meter.rate(3), 50_500 / 10)
  const top = meter.top(100, 3)
  t.ok(top.length <= 32, `${top.length} namespaces kept across two buckets, not 50,001`)
  t.equal(top[0]?.[0], 'busy/obj', 'the busiest comes first')
  t.end()
})

t.test('promtool check metrics accepts the exposition', async (t) => {
  const app = await build(t, env)
  await post(app, 'p', { x: { shape: [4], dtype: 'uint8' } })
  await app.inject({ url: '/v1/segments' })
  const text = (await app.inject({ url: '/metrics' })).body
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  t.equal(r.error, undefined, 'promtool missing: run scripts/install-test-deps.sh')
  t.equal(r.status, 0, r.stdout + r.stderr)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=p' })
})

checkNoLeftovers(t, prefix)
