import t from 'tap'
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { OPERATOR } from '../src/segments/caller.js'
import { ConfigError, isLoopback, loadConfig } from '../src/config.js'
import { build, checkNoLeftovers, stateDir, suitePrefix } from './helpers/build.js'
import { runService } from './helpers/server.js'

const prefix = suitePrefix('security')
const KEY_A = 'alpha-key-0123456789abcdef'
const KEY_B = 'bravo-key-0123456789abcdef'
const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_API_KEYS: `${KEY_A},${KEY_B}` }
const as = (key: string) => ({ authorization: `Bearer ${key}` })

interface Req { method?: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object | Buffer, headers?: Record<string, string> }
const send = (app: FastifyInstance, key: string | undefined, r: Req): Promise<LightMyRequestResponse> =>
  app.inject({ method: r.method ?? 'GET', url: r.url, ...(r.payload === undefined ? {} : { payload: r.payload }), headers: { ...(key === undefined ? {} : as(key)), ...r.headers } })

t.test('with keys configured, every /v1 route needs one: 401 in the API\'s error format', async (t) => {
  const app = await build(t, env)
  const name = `${prefix}0123456789abcdef`
  const routes: Req[] = [
    { method: 'POST', url: '/v1/segments', payload: { namespace: 'x', tensors: { a: { shape: [1], dtype: 'uint8' } } } },
    { url: '/v1/segments' },
    { url: `/v1/segments/${name}` },
    { method: 'DELETE', url: `/v1/segments/${name}` },
    { method: 'DELETE', url: '/v1/segments?namespace=x' },
    { url: `/v1/segments/${name}/data` },
    { method: 'PUT', url: `/v1/segments/${name}/data`, payload: Buffer.alloc(1), headers: { 'content-type': 'application/octet-stream' } },
    { method: 'POST', url: '/v1/decode', payload: {} },
    { method: 'POST', url: '/v1/renew', payload: { namespace: 'x' } },
    { url: '/v1/stats' }
  ]
  for (const r of routes) {
    for (const header of [undefined, 'Bearer wrong-key-0123456789abcdef', `Basic ${Buffer.from('a:b').toString('base64')}`, `bearer ${KEY_A}x`, 'Bearer ']) {
      const res = await send(app, undefined, { ...r, headers: { ...r.headers, ...(header === undefined ? {} : { authorization: header }) } })
      t.equal(res.statusCode, 401, `${r.method ?? 'GET'} ${r.url} with ${header ?? 'no header'}`)
      t.same(res.json(), { statusCode: 401, code: 'TSHM_UNAUTHORIZED', error: 'Unauthorized', message: 'Authorization: a valid bearer key is required' })
      t.equal(res.headers['www-authenticate'], 'Bearer realm="tensorshm"')
    }
  }
  t.same(app.segments.list(undefined, OPERATOR), [], 'nothing was created')
  for (const url of ['/healthz', '/readyz', '/metrics', '/docs', '/openapi.json']) {
    t.equal((await app.inject({ url })).statusCode < 400, true, `${url} stays open by default`)
  }
  const locked = await build(t, { ...env, TENSORSHM_AUTH_METRICS: 'true', TENSORSHM_AUTH_DOCS: 'true' })
  for (const url of ['/metrics', '/docs', '/openapi.json']) {
    t.equal((await locked.inject({ url })).statusCode, 401, `${url} locked by configuration`)
    t.ok((await locked.inject({ url, headers: as(KEY_B) })).statusCode < 400, `${url} with a key`)
  }
  t.equal((await locked.inject({ url: '/healthz' })).statusCode, 200, 'probes never need a key')
})

t.test('a namespace belongs to the key that first used it; another key cannot see, read, write, renew or release it', async (t) => {
  const app = await build(t, env)
  const made = await send(app, KEY_A, { method: 'POST', url: '/v1/segments', payload: { namespace: 'tenant-a/req-1', tensors: { img: { shape: [4, 4], dtype: 'uint8' } } } })
  t.equal(made.statusCode, 201)
  const desc = made.json().segments.img as { name: string, shape: number[], dtype: string }
  const secret = Buffer.alloc(16, 7)
  t.equal((await send(app, KEY_A, { method: 'PUT', url: `/v1/segments/${desc.name}/data`, payload: secret, headers: { 'content-type': 'application/octet-stream' } })).statusCode, 204)

  const unknown = await send(app, KEY_B, { url: `/v1/segments/${prefix}ffffffffffffffff` })
  const attempts: Array<[string, Req, number, object | undefined]> = [
    ['list all', { url: '/v1/segments' }, 200, { segments: [] }],
    ['list the namespace', { url: '/v1/segments?namespace=tenant-a' }, 200, { segments: [] }],
    ['describe', { url: `/v1/segments/${desc.name}` }, 404, undefined],
    ['read', { url: `/v1/segments/${desc.name}/data` }, 404, undefined],
    ['write', { method: 'PUT', url: `/v1/segments/${desc.name}/data`, payload: Buffer.alloc(16), headers: { 'content-type': 'application/octet-stream' } }, 404, undefined],
    ['decode', { method: 'POST', url: '/v1/decode', payload: { img: desc } }, 404, undefined],
    ['renew', { method: 'POST', url: '/v1/renew', payload: { namespace: 'tenant-a/req-1', ttl_seconds: 0 } }, 200, { namespace: 'tenant-a/req-1', renewed: 0, expires_at: null }],
    ['release one', { method: 'DELETE', url: `/v1/segments/${desc.name}` }, 404, undefined],
    ['release the namespace', { method: 'DELETE', url: '/v1/segments?namespace=tenant-a' }, 200, { released: 0 }],
    ['create inside it', { method: 'POST', url: '/v1/segments', payload: { namespace: 'tenant-a/mine', tensors: { img: { shape: [1], dtype: 'uint8' } } } }, 403, undefined]
  ]
  for (const [label, req, status, body] of attempts) {
    const res = await send(app, KEY_B, req)
    t.equal(res.statusCode, status, label)
    if (body !== undefined) t.same(res.json(), body, label)
    if (status === 404) t.same({ ...res.json(), message: '' }, { ...unknown.json(), message: '' }, `${label}: answered like an unknown segment`)
    t.notMatch(res.body, desc.name.slice(prefix.length), `${label}: the answer reveals no segment name`)
    t.notMatch(JSON.stringify(res.headers), desc.name.slice(prefix.length), `${label}: nor do the headers`)
  }
  t.match((await send(app, KEY_B, attempts[9]?.[1] as Req)).json(), { code: 'TSHM_NAMESPACE_FORBIDDEN', message: 'namespace: "tenant-a" belongs to another API key' })
  const mine = await send(app, KEY_A, { url: `/v1/segments/${desc.name}/data`, headers: { accept: 'application/octet-stream' } })
  t.same(mine.rawPayload, secret, 'A\'s data is intact and A can read it')
  t.equal((await send(app, KEY_A, { url: `/v1/segments/${desc.name}` })).json().expires_at !== null, true, 'B\'s renewal did not touch A\'s lease')
  t.equal((await send(app, KEY_B, { method: 'POST', url: '/v1/segments', payload: { namespace: 'tenant-b', tensors: { x: { shape: [1], dtype: 'uint8' } } } })).statusCode, 201)
  t.same((await send(app, KEY_A, { method: 'DELETE', url: '/v1/segments?namespace=tenant-a' })).json(), { released: 1 })
  t.same((await send(app, KEY_B, { method: 'DELETE', url: '/v1/segments?namespace=tenant-b' })).json(), { released: 1 })
})

t.test('a refused request claims no namespace', async (t) => {
  const app = await build(t, env)
  const bad = await send(app, KEY_A, { method: 'POST', url: '/v1/segments', payload: { namespace: 'unclaimed/x', tensors: { k: { shape: [1], dtype: 'object' } } } })
  t.equal(bad.statusCode, 400)
  const good = await send(app, KEY_B, { method: 'POST', url: '/v1/segments', payload: { namespace: 'unclaimed/y', tensors: { k: { shape: [1], dtype: 'uint8' } } } })
  t.equal(good.statusCode, 201, 'the root went to the first key that created something in it')
  t.equal((await send(app, KEY_A, { method: 'POST', url: '/v1/segments', payload: { namespace: 'unclaimed/z', tensors: { k: { shape: [1], dtype: 'uint8' } } } })).statusCode, 403)
})

t.test('ownership survives a restart', async (t) => {
  const dir = stateDir(t)
  const first = await build(t, { ...env, TENSORSHM_STATE_DIR: dir, TENSORSHM_KEEP_ON_SHUTDOWN: 'true' })
  const made = await send(first, KEY_A, { method: 'POST', url: '/v1/segments', payload: { namespace: 'owned', tensors: { x: { shape: [1], dtype: 'uint8' } } } })
  await first.close()
  const second = await build(t, { ...env, TENSORSHM_STATE_DIR: dir })
  t.equal((await send(second, KEY_B, { url: `/v1/segments/${made.json().segments.x.name as string}` })).statusCode, 404)
  t.equal((await send(second, KEY_B, { method: 'POST', url: '/v1/segments', payload: { namespace: 'owned/x', tensors: { x: { shape: [1], dtype: 'uint8' } } } })).statusCode, 403)
  t.equal((await send(second, KEY_A, { url: `/v1/segments/${made.json().segments.x.name as string}` })).statusCode, 200)
})

t.test('rate limiting per key: 429 with Retry-After past the limit, other keys unaffected', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_RATE_LIMIT: '5' })
  const statuses: number[] = []
  let limited: LightMyRequestResponse | undefined
  for (let i = 0; i < 12; i++) {
    const res = await send(app, KEY_A, { url: '/v1/segments' })
    statuses.push(res.statusCode)
    if (res.statusCode === 429) limited = res
  }
  t.ok(statuses.filter((s) => s === 200).length <= 10, `${statuses.join(' ')}`)
  t.ok(limited !== undefined, 'a burst meets a 429')
  t.match(limited?.json(), { statusCode: 429, code: 'TSHM_RATE_LIMITED', message: /more than 5 requests per second/ })
  t.match(limited?.headers['retry-after'], /^[0-9]+$/)
  t.equal((await send(app, KEY_B, { url: '/v1/segments' })).statusCode, 200, 'another key has its own budget')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'probes are never limited')
})

t.test('load shedding: 503 with Retry-After while the event loop lags; liveness still answers', async (t) => {
  const app = await build(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_MAX_EVENT_LOOP_DELAY: '50' })
  let shed: LightMyRequestResponse | undefined
  const deadline = Date.now() + 20_000
  while (shed === undefined && Date.now() < deadline) {
    const until = Date.now() + 300
    while (Date.now() < until) { /* a handler hogging the event loop */ }
    await sleep(10)
    const res = await app.inject({ url: '/v1/segments' })
    if (res.statusCode === 503) {
      shed = res
      t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, '/healthz answers under pressure')
    }
  }
  t.match(shed?.json(), { statusCode: 503, code: 'TSHM_OVERLOADED', message: /retry after 5 s/ })
  t.equal(shed?.headers['retry-after'], '5')
})

t.test('the service binds loopback by default and refuses a public address without keys', async (t) => {
  t.equal(loadConfig({}).host, '127.0.0.1')
  for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) t.ok(isLoopback(host), host)
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', 'myhost', '128.0.0.1']) t.notOk(isLoopback(host), host)
  t.throws(() => loadConfig({ TENSORSHM_HOST: '0.0.0.0' }), ConfigError)
  t.equal(loadConfig({ TENSORSHM_HOST: '0.0.0.0', TENSORSHM_API_KEYS: KEY_A }).host, '0.0.0.0')
  t.equal(loadConfig({ TENSORSHM_HOST: '0.0.0.0', TENSORSHM_ALLOW_INSECURE_BIND: 'true' }).host, '0.0.0.0')
  const { code, output } = await runService({ TENSORSHM_HOST: '0.0.0.0', TENSORSHM_PORT: '0', TENSORSHM_SEGMENT_PREFIX: prefix })
  t.equal(code, 2)
  t.match(output, /TENSORSHM_HOST: refusing to listen on 0\.0\.0\.0 without authentication/)
})

t.test('keys from a file; a weak key is refused without being echoed', async (t) => {
  const file = `${stateDir(t)}/keys`
  writeFileSync(file, `# tenants\n${KEY_A}\n\n  ${KEY_B}  \n`)
  t.same(loadConfig({ TENSORSHM_API_KEYS_FILE: file }).apiKeys, [KEY_A, KEY_B])
  t.same(loadConfig({ TENSORSHM_API_KEYS_FILE: file, TENSORSHM_API_KEYS: KEY_A }).apiKeys, [KEY_A, KEY_B], 'both sources, deduplicated')
  writeFileSync(file, 'hunter2\n')
  const err = t.throws(() => loadConfig({ TENSORSHM_API_KEYS_FILE: file })) as Error
  t.match(err.message, /^TENSORSHM_API_KEYS_FILE: every key must be 16/)
  t.notMatch(err.message, /hunter2/)
  writeFileSync(file, '# nothing here\n')
  t.throws(() => loadConfig({ TENSORSHM_API_KEYS_FILE: file }), { message: /holds no key/ })
})

checkNoLeftovers(t, prefix)
