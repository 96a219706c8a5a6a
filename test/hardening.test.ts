// Limits that hold whatever a client does: the journal stays as large as the live state, quotas count what files
// really cost, a released namespace root is free again, and stalled or trickling connections are cut.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { closeSync, openSync, statSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { build, checkNoLeftovers, create, openFds, post, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { api } from './helpers/e2e.js'
import { poll, sleep, startService } from './helpers/server.js'

const prefix = suitePrefix('hard')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_SWEEP_INTERVAL: '3600', TENSORSHM_POOL_BYTES: '0' }
const KEY_A = 'alpha-key-0123456789abcdef'
const KEY_B = 'bravo-key-0123456789abcdef'

const stats = async (app: FastifyInstance) => (await app.inject({ url: '/v1/stats' })).json()

t.test('renewals are one journal line each, however many segments they cover; a restart still sees them', async (t) => {
  const dir = stateDir(t)
  const keep = { ...env, TENSORSHM_STATE_DIR: dir, TENSORSHM_KEEP_ON_SHUTDOWN: 'true', TENSORSHM_RESERVE: 'false' }
  const app = await build(t, keep)
  for (const ns of ['grow/a', 'grow/b']) t.equal((await post(app, ns, { x: Array.from({ length: 1000 }, () => ({ shape: [1], dtype: 'uint8' })) })).statusCode, 201)
  const created = statSync(`${dir}/journal.jsonl`).size
  let last: { expires_at: string } | undefined
  for (let i = 0; i < 300; i++) last = (await app.inject({ method: 'POST', url: '/v1/renew', payload: { namespace: 'grow', ttl_seconds: 900 + i } })).json()
  const grown = statSync(`${dir}/journal.jsonl`).size - created
  t.ok(grown < 300 * 200, `300 renewals of 2000 segments added ${grown} bytes (a line per segment would be ${300 * 2000 * 40}+)`)
  await app.close()

  const again = await build(t, keep)
  const listed = (await again.inject({ url: '/v1/segments?namespace=grow' })).json().segments as Array<{ ttl_seconds: number, expires_at: string }>
  t.equal(listed.length, 2000)
  t.ok(listed.every((s) => s.ttl_seconds === 1199 && s.expires_at === last?.expires_at), 'every lease as the last renewal left it')
  await again.inject({ method: 'DELETE', url: '/v1/segments?namespace=grow' })
})

t.test('quotas count pages and files, not st_size: empty tensors cannot flood /dev/shm', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_TOTAL_BYTES: '64KiB' })
  let made = 0
  for (; made < 100; made++) if ((await post(app, `empty/${made}`, { x: { shape: [0], dtype: 'uint8' } })).statusCode !== 201) break
  t.equal(made, 16, 'a zero-size tensor still costs a page: 16 of them fill 64 KiB')
  const capped = await build(t, { ...env, TENSORSHM_MAX_SEGMENTS: '3' })
  t.equal((await post(capped, 'few/a', { x: [{ shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }] })).statusCode, 201)
  const over = await post(capped, 'few/b', { x: [{ shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }] })
  t.equal(over.statusCode, 507)
  t.match(over.json(), { code: 'TSHM_QUOTA_EXCEEDED', message: /holds 2 segments; 2 more would pass the limit of 3 \(TENSORSHM_MAX_SEGMENTS\)/ })
  t.equal((await stats(capped)).quota_rejections.segments, 1)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=empty' })
  await capped.inject({ method: 'DELETE', url: '/v1/segments?namespace=few' })
})

t.test('a released segment still being read counts against the quota until its reader lets go', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_TOTAL_BYTES: '24MiB', TENSORSHM_IDLE_TIMEOUT: '2' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const name = (await post(app, 'held/a', { x: { shape: [16, 1024, 1024], dtype: 'uint8' } })).json().segments.x.name as string
  const res = await fetch(`${url}/v1/segments/${name}/data`, { headers: { accept: 'application/octet-stream' } })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  await reader.read()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/segments/${name}` })).statusCode, 204)
  const held = (await stats(app)).released_held_bytes
  t.ok(held >= 16 << 20, `its pages are still there, pinned by the reader: ${held} bytes held`)
  const refused = await post(app, 'held/b', { x: { shape: [16, 1024, 1024], dtype: 'uint8' } })
  t.match(refused.json(), { statusCode: 507, code: 'TSHM_QUOTA_EXCEEDED', message: /TENSORSHM_MAX_TOTAL_BYTES/ })
  await reader.cancel()
  await poll('the reader\'s pages given back', async () => { if ((await stats(app)).released_held_bytes !== 0) throw new Error('still held') }, { timeoutMs: 10_000, intervalMs: 50 })
  t.equal((await post(app, 'held/b', { x: { shape: [16, 1024, 1024], dtype: 'uint8' } })).statusCode, 201)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=held' })
})

t.test('a namespace root is held only while it has segments: a key cannot squat a client id it released', async (t) => {
  const dir = stateDir(t)
  const keys = { ...env, TENSORSHM_API_KEYS: `${KEY_A},${KEY_B}`, TENSORSHM_STATE_DIR: dir, TENSORSHM_KEEP_ON_SHUTDOWN: 'true' }
  const a = { authorization: `Bearer ${KEY_A}` }
  const b = { authorization: `Bearer ${KEY_B}` }
  const app = await build(t, keys)
  t.equal((await post(app, 'root17/x', { k: { shape: [1], dtype: 'uint8' } }, { headers: a })).statusCode, 201)
  t.equal((await post(app, 'root17/y', { k: { shape: [1], dtype: 'uint8' } }, { headers: b })).statusCode, 403, 'held while A has a segment there')
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=root17', headers: a })
  t.equal((await post(app, 'root17/y', { k: { shape: [1], dtype: 'uint8' } }, { headers: b })).statusCode, 201, 'free once A released its last one')
  t.equal((await post(app, 'root17/z', { k: { shape: [1], dtype: 'uint8' } }, { headers: a })).statusCode, 403, 'and now B holds it')
  await app.close()
  const again = await build(t, keys)
  t.equal((await post(again, 'root17/z', { k: { shape: [1], dtype: 'uint8' } }, { headers: a })).statusCode, 403, 'the claim survives a restart with its segment')
  await again.inject({ method: 'DELETE', url: '/v1/segments?namespace=root17', headers: b })
})

const STILL_OPEN = 'still open after 20 s'

/** A raw connection to the app; `closed` resolves with what the server sent once it closes it (or STILL_OPEN, within 20 s). */
async function raw (t: Test, url: string): Promise<{ socket: Socket, closed: Promise<string> }> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  let received = ''
  socket.on('data', (d: Buffer) => { received += d.toString() })
  const closed = new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve(STILL_OPEN), 20_000).unref()
    socket.on('close', () => { clearTimeout(timer); resolve(received) })
    socket.on('error', () => {})
  })
  t.teardown(() => { socket.destroy() })
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return { socket, closed }
}

t.test('a stalled upload is cut after TENSORSHM_IDLE_TIMEOUT and gives its descriptors back', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_IDLE_TIMEOUT: '0.5' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const name = (await post(app, 'stall/a', { x: { shape: [1 << 20], dtype: 'uint8' } })).json().segments.x.name as string
  const before = openFds()
  const { socket, closed } = await raw(t, url)
  socket.write(`PUT /v1/segments/${name}/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${1 << 20}\r\n\r\n`)
  socket.write(Buffer.alloc(1000))
  t.not(await closed, STILL_OPEN, 'closed')
  await poll('the descriptors given back', async () => { if (openFds() > before) throw new Error(`${openFds()} fds, ${before} before`) }, { timeoutMs: 5000, intervalMs: 50 })
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=stall' })
})

/** Sends `head`, then one more `drip` byte every 100 ms until the service closes the connection; what it answered. */
async function trickle (t: Test, env: Record<string, string>, head: string, drip: string): Promise<string> {
  const app = await build(t, env)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const { socket, closed } = await raw(t, url)
  socket.write(head)
  const timer = setInterval(() => { if (!socket.destroyed) socket.write(drip) }, 100)
  t.teardown(() => { clearInterval(timer) })
  const answer = await closed
  clearInterval(timer)
  return answer
}

t.test('a request that trickles in is cut after TENSORSHM_REQUEST_TIMEOUT, however steadily it trickles', async (t) => {
  const answer = await trickle(t, { ...env, TENSORSHM_REQUEST_TIMEOUT: '1' }, 'POST /v1/segments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{', ' ')
  t.match(answer, /^HTTP\/1\.1 408 [\s\S]*\r\n\r\n\{"statusCode":408,"code":"TSHM_REQUEST_TIMEOUT"/, 'in this API\'s format')
})

t.test('headers that trickle in are cut after TENSORSHM_HEADERS_TIMEOUT: slow clients cannot hold every connection slot', async (t) => {
  const answer = await trickle(t, { ...env, TENSORSHM_HEADERS_TIMEOUT: '1' }, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X')
  t.match(answer, /^HTTP\/1\.1 408 [\s\S]*\r\n\r\n\{"statusCode":408,"code":"TSHM_REQUEST_TIMEOUT"/, 'in this API\'s format')
})

t.test('releasing thousands of segments at once opens only a few files at a time, whatever the open-file limit', async (t) => {
  const state = stateDir(t)
  // 512 descriptors for the whole process, as on a host with a low limit: 1200 segments go into the pool at once.
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: state }, { wrap: (argv) => ['prlimit', '--nofile=512:512', '--', ...argv] })
  for (const ns of ['mass/a', 'mass/b']) {
    const r = await api(svc.url, 'POST', '/v1/segments', { namespace: ns, tensors: { k: Array.from({ length: 600 }, () => ({ shape: [0], dtype: 'uint8' })) } })
    t.equal(r.status, 201)
  }
  t.same((await api(svc.url, 'DELETE', '/v1/segments?namespace=mass')).body, { released: 1200 })
  await poll('the kept segments zeroed', async () => {
    const stats = (await api(svc.url, 'GET', '/v1/stats')).body as { pool: { segments: number } }
    if (stats.pool.segments === 0) throw new Error('nothing kept')
  }, { timeoutMs: 10_000, intervalMs: 100 })
  await sleep(500)
  t.equal((await api(svc.url, 'GET', '/healthz')).status, 200, 'still alive')
  t.equal(await svc.stop(), 0)
  t.match(svc.log(), /segments released at shutdown/)
})

t.test('a kept-alive connection is silent too: it goes after TENSORSHM_IDLE_TIMEOUT, not Node\'s 72 s', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_IDLE_TIMEOUT: '0.5' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const { socket, closed } = await raw(t, url)
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n')
  const answer = await closed
  t.match(answer, /^HTTP\/1\.1 200 /, 'answered, then closed once silent')
})

t.test('what the HTTP parser refuses is answered in this API\'s format too', async (t) => {
  const app = await build(t, env)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const cases: Array<[string, RegExp]> = [
    ['NOT HTTP AT ALL\r\n\r\n', /^HTTP\/1\.1 400 [\s\S]*"code":"TSHM_INVALID_REQUEST"/],
    [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431 [\s\S]*"code":"TSHM_HEADERS_TOO_LARGE"/],
    ['POST /v1/segments HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', /^HTTP\/1\.1 400 [\s\S]*"code":"TSHM_INVALID_REQUEST"/]
  ]
  for (const [request, expected] of cases) {
    const { socket, closed } = await raw(t, url)
    socket.write(request)
    t.match(await closed, expected, request.slice(0, 40))
  }
})

t.test('connections are capped by the open-file limit too, so that segments and sockets never run out together', async (t) => {
  // 256 descriptors: at most 64 connections (a quarter), whatever TENSORSHM_MAX_CONNECTIONS says.
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t) }, { wrap: (argv) => ['prlimit', '--nofile=256:256', '--', ...argv] })
  const sockets = await Promise.all(Array.from({ length: 100 }, async () => await raw(t, svc.url)))
  const outcomes = await Promise.all(sockets.map(async ({ closed }) => await Promise.race([closed.then(() => 'closed'), sleep(2000).then(() => 'open')])))
  // The start's own /healthz check may still hold one of the 64.
  const open = outcomes.filter((o) => o === 'open').length
  t.ok(open >= 60 && open <= 64, `${open} of 100 kept, the rest closed on arrival`)
  for (const { socket } of sockets) socket.destroy()
})

/** Every descriptor of this process taken while `fn` runs, as under an fd flood. */
async function withoutDescriptors<T> (fn: () => Promise<T>): Promise<T> {
  const taken: number[] = []
  try {
    for (;;) taken.push(openSync('/dev/null', 'r'))
  } catch {}
  try {
    return await fn()
  } finally {
    for (const fd of taken) closeSync(fd)
  }
}

t.test('a segment that kept its descriptor is released even when no descriptor is free', async (t) => {
  const app = await build(t, env)
  const name = (await create(app, 'nofd/held', { x: { shape: [4096], dtype: 'uint8' } })).x?.name ?? ''
  const released = await withoutDescriptors(async () => await app.inject({ method: 'DELETE', url: `/v1/segments/${name}` }))
  t.equal(released.statusCode, 204)
  t.notOk(shmFiles(prefix).includes(name), 'its name is gone at once')
  t.equal((await stats(app)).released_held_bytes, 0, 'nothing left waiting for a sweep')
})

t.test('a release that cannot even look at its file (no descriptor free) leaves it in limbo, counted, for the next sweep', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_TOTAL_BYTES: '1MiB' })
  await app.sweeper.sweep() // the one at start, out of the way: only the sweep below may retry
  // 64 live segments keep their descriptors (HeldFds' share): the next one is opened by name at its release.
  await create(app, 'nofd/fill', Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`f${i}`, { shape: [1], dtype: 'uint8' }])))
  const name = (await create(app, 'nofd/a', { x: { shape: [768, 1024], dtype: 'uint8' } })).x?.name ?? ''
  // The release's open() fails with EMFILE.
  const released = await withoutDescriptors(async () => await app.inject({ method: 'DELETE', url: `/v1/segments/${name}` }))
  t.equal(released.statusCode, 204)
  t.ok(shmFiles(prefix).includes(name), 'the file could not be checked, so it is still there')
  t.equal((await stats(app)).released_held_bytes, 768 * 1024, 'and counted against the quota meanwhile')
  t.equal((await post(app, 'nofd/b', { x: { shape: [768, 1024], dtype: 'uint8' } })).statusCode, 507)
  await app.sweeper.sweep()
  t.notOk(shmFiles(prefix).includes(name), 'the next sweep unlinks it')
  t.equal((await stats(app)).released_held_bytes, 0)
})

t.test('connections past TENSORSHM_MAX_CONNECTIONS are closed on arrival', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_CONNECTIONS: '3' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const held = [await raw(t, url), await raw(t, url), await raw(t, url)]
  const extra = await raw(t, url)
  t.not(await extra.closed, STILL_OPEN, 'closed')
  held[0]?.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(await held[0]?.closed, /^HTTP\/1\.1 200 /, 'those within the cap are served')
})

checkNoLeftovers(t, prefix)
