import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, captureWarnings, checkNoLeftovers, post, shmFiles, suitePrefix } from './helpers/build.js'
import { poll } from './helpers/server.js'

const prefix = suitePrefix('leases')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }

t.test('ttl_seconds and the default TTL set the lease; 0 never expires', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_DEFAULT_TTL: '120', TENSORSHM_SWEEP_INTERVAL: '3600' })
  const before = Date.now()
  const a = await post(app, 'l/a', { x: { shape: [1], dtype: 'uint8' } })
  const b = await post(app, 'l/b', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: 0 })
  const c = await post(app, 'l/c', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: 5 })
  const expiry = Date.parse(a.json().expires_at)
  t.ok(expiry >= before + 120_000 && expiry <= Date.now() + 120_000, 'default TTL')
  t.equal(b.json().expires_at, null)
  const info = (await app.inject({ url: `/v1/segments/${c.json().segments.x.name}` })).json()
  t.equal(info.ttl_seconds, 5)
  t.equal(info.expires_at, c.json().expires_at)
  for (const ttl of [-1, 1.5, '10', 31536001]) {
    const r = await post(app, 'l/bad', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: ttl })
    t.match(r.json(), { statusCode: 400, message: /ttl_seconds/ }, `ttl_seconds ${JSON.stringify(ttl)}`)
  }
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=l' })
})

t.test('the sweeper reclaims an abandoned segment once its lease runs out, and logs it', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_SWEEP_INTERVAL: '0.1', TENSORSHM_LOG_LEVEL: 'warn' })
  const lines = captureWarnings(app)
  const dead = await post(app, 'client-dead/obj', { img: { shape: [2, 5], dtype: 'uint16' } }, { ttl_seconds: 1 })
  const kept = await post(app, 'client-alive/obj', { img: { shape: [4], dtype: 'uint8' } }, { ttl_seconds: 0 })
  const name = dead.json().segments.img.name as string
  await poll('the lease to run out', async () => { if (shmFiles(prefix).includes(name)) throw new Error('still there') }, { timeoutMs: 15_000, intervalMs: 50 })
  t.equal((await app.inject({ url: `/v1/segments/${name}` })).statusCode, 404)
  t.match(lines.find((l) => l.includes('lease expired')), /"segment":"[^"]+","namespace":"client-dead\/obj","key":"img","bytes":20/)
  const stats = (await app.inject({ url: '/v1/stats' })).json()
  t.match(stats, { segments: 1, releases: { expired: 1 }, reclaimed: { expired: 1 } })
  t.ok(shmFiles(prefix).includes(kept.json().segments.img.name), 'ttl 0 is never reclaimed')
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=client-alive' })
})

t.test('renewing a namespace extends every lease under it, by its own TTL or a new one', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_SWEEP_INTERVAL: '3600' })
  const a = await post(app, 'r/a', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: 30 })
  await post(app, 'r/a/sub', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: 60 })
  await post(app, 'r/ab', { x: { shape: [1], dtype: 'uint8' } }, { ttl_seconds: 30 })
  const t0 = Date.now()
  const own = await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'r/a' } })
  t.equal(own.statusCode, 200)
  t.equal(own.json().renewed, 2, 'r/a and r/a/sub, not r/ab')
  const earliest = Date.parse(own.json().expires_at)
  t.ok(earliest >= t0 + 30_000 && earliest <= Date.now() + 30_000)
  const longer = await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'r/a', ttl_seconds: 3600 } })
  t.ok(Date.parse(longer.json().expires_at) >= t0 + 3_600_000)
  t.equal((await app.inject({ url: `/v1/segments/${a.json().segments.x.name}` })).json().ttl_seconds, 3600, 'the new TTL sticks')
  const forever = await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'r', ttl_seconds: 0 } })
  t.same(forever.json(), { namespace: 'r', renewed: 3, expires_at: null })
  t.same((await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'nobody' } })).json(), { namespace: 'nobody', renewed: 0, expires_at: null })
  t.equal((await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'a//b' } })).statusCode, 400)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=r' })
})

t.test('quotas: over the byte limit or the namespace limit is a 507 that leaves nothing behind', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_TOTAL_BYTES: '1MiB', TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE: '3' })
  t.equal((await post(app, 'q/a', { x: { shape: [512, 1024], dtype: 'uint8' } })).statusCode, 201)
  const before = shmFiles(prefix)
  const bytes = await post(app, 'q/b', { y: { shape: [256, 1024], dtype: 'uint8' }, z: { shape: [257, 1024], dtype: 'uint8' } })
  t.equal(bytes.statusCode, 507)
  t.match(bytes.json(), { code: 'TSHM_QUOTA_EXCEEDED', message: /TENSORSHM_MAX_TOTAL_BYTES/ })
  t.same(shmFiles(prefix), before)
  t.equal((await post(app, 'q/c', { x: [{ shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }] })).statusCode, 201)
  const many = await post(app, 'q/c', { y: [{ shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }] })
  t.match(many.json(), { statusCode: 507, code: 'TSHM_QUOTA_EXCEEDED', message: /namespace "q\/c" holds 2 segments.*TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE/ })
  const space = await build(t, { ...env, TENSORSHM_MAX_SEGMENT_BYTES: '1TiB' })
  const huge = await post(space, 'q/huge', { x: { shape: [2 ** 40], dtype: 'uint8' } })
  t.match(huge.json(), { statusCode: 507, code: 'TSHM_INSUFFICIENT_STORAGE', message: /free on \/dev\/shm/ })
  t.same(shmFiles(prefix).length, 3)
  const stats = (await app.inject({ url: '/v1/stats' })).json()
  t.same(stats.quota_rejections, { total_bytes: 1, segments: 0, namespace_segments: 1, capacity: 0 })
  t.same((await space.inject({ url: '/v1/stats' })).json().quota_rejections, { total_bytes: 0, segments: 0, namespace_segments: 0, capacity: 1 })
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=q' })
})

t.test('with reserve on, segments are backed at creation; off, they are sparse', async (t) => {
  const on = await build(t, env)
  const off = await build(t, { ...env, TENSORSHM_RESERVE: 'false' })
  const shape = { x: { shape: [4, 1024, 1024], dtype: 'uint8' } }
  const { statSync } = await import('node:fs')
  const blocks = async (app: FastifyInstance) => statSync(`/dev/shm/${(await post(app, 'res', shape)).json().segments.x.name}`).blocks * 512
  t.equal(await blocks(on), 4 * 2 ** 20)
  t.equal(await blocks(off), 0)
  await on.inject({ method: 'DELETE', url: '/v1/segments?namespace=res' })
  await off.inject({ method: 'DELETE', url: '/v1/segments?namespace=res' })
})

checkNoLeftovers(t, prefix)
