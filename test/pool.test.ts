import t from 'tap'
import { linkSync, openSync, closeSync, ftruncateSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { build, checkNoLeftovers, create, shmFiles, suitePrefix } from './helpers/build.js'

const prefix = suitePrefix('pool')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_SWEEP_INTERVAL: '3600' }
const KEY_A = 'alpha-key-0123456789abcdef'
const KEY_B = 'bravo-key-0123456789abcdef'

const make = async (app: FastifyInstance, namespace: string, shape = [64, 1024], headers: Record<string, string> = {}): Promise<string> =>
  (await create(app, namespace, { x: { shape, dtype: 'uint8' } }, { headers })).x?.name ?? ''
const fill = async (app: FastifyInstance, name: string, byte: number, headers: Record<string, string> = {}) => {
  const size = statSync(`/dev/shm/${name}`).size
  const r = await app.inject({ method: 'PUT', url: `/v1/segments/${name}/data`, headers: { 'content-type': 'application/octet-stream', ...headers }, payload: Buffer.alloc(size, byte) })
  if (r.statusCode !== 204) throw new Error(r.body)
}
const release = (app: FastifyInstance, name: string, headers: Record<string, string> = {}) => app.inject({ method: 'DELETE', url: `/v1/segments/${name}`, headers })

t.test('a released segment is renamed away, zeroed, and reused by the same client for the same size', async (t) => {
  const app = await build(t, env)
  const first = await make(app, 'client-1/req-1')
  const ino = statSync(`/dev/shm/${first}`).ino
  await fill(app, first, 0xab)
  t.equal((await release(app, first)).statusCode, 204)
  t.notOk(shmFiles(prefix).includes(first), 'the old name is gone at once')
  t.equal(app.segments.figures().pool.segments, 1)
  await app.segments.idle()
  const second = await make(app, 'client-1/req-2')
  t.not(second, first, 'a fresh name')
  t.equal(statSync(`/dev/shm/${second}`).ino, ino, 'the same pages')
  t.ok(readFileSync(`/dev/shm/${second}`).every((b) => b === 0), 'zeroed: nothing of req-1 shows in req-2')
  t.equal(app.segments.figures().pool.segments, 0)
  const m = (await app.inject({ url: '/metrics' })).body
  t.match(m, /tensorshm_pool_hits_total 1\n/)
  t.match(m, /tensorshm_pool_misses_total 1\n/)

  const other = await make(app, 'client-2/req-1')
  t.equal(app.segments.figures().pool.segments, 0)
  await release(app, second)
  await app.segments.idle()
  const third = await make(app, 'client-2/req-2')
  t.not(statSync(`/dev/shm/${third}`).ino, ino, 'another client never gets client-1\'s pages')
  const bigger = await make(app, 'client-1/req-3', [65, 1024])
  t.not(statSync(`/dev/shm/${bigger}`).ino, ino, 'nor does another size')
  t.equal(app.segments.figures().pool.segments, 1)
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=client-1' })
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=client-2' })
  t.notOk(shmFiles(prefix).includes(other))
})

t.test('with API keys, the pool is per key as well', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_API_KEYS: `${KEY_A},${KEY_B}` })
  const a = { authorization: `Bearer ${KEY_A}` }
  const b = { authorization: `Bearer ${KEY_B}` }
  const name = await make(app, 'a-root/1', [8], a)
  const ino = statSync(`/dev/shm/${name}`).ino
  await release(app, name, a)
  const theirs = await make(app, 'b-root/1', [8], b)
  t.not(statSync(`/dev/shm/${theirs}`).ino, ino)
  const mine = await make(app, 'a-root/2', [8], a)
  t.equal(statSync(`/dev/shm/${mine}`).ino, ino)
})

t.test('what a client may have done to a released segment keeps it out of the pool', async (t) => {
  const app = await build(t, env)
  // A client that still holds the file (an fd, a hard link) could see the next user's data: such files are dropped.
  const linked = await make(app, 'c/1', [16])
  const link = `/dev/shm/${prefix}hardlink`
  linkSync(`/dev/shm/${linked}`, link)
  await release(app, linked)
  const next = await make(app, 'c/2', [16])
  t.not(statSync(`/dev/shm/${next}`).ino, statSync(link).ino, 'a hard-linked file is not reused')
  unlinkSync(link)

  const cut = await make(app, 'c/3', [32])
  const fd = openSync(`/dev/shm/${cut}`, 'r+')
  await release(app, cut)
  await app.segments.idle()
  ftruncateSync(fd, 0)
  closeSync(fd)
  const after = await make(app, 'c/4', [32])
  t.equal(statSync(`/dev/shm/${after}`).size, 32, 'a truncated one is not reused either')
  t.equal(app.segments.figures().pool.segments, 0, 'both were dropped, not kept')
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=c' })
})

t.test('a segment that came out of the pool keeps its fd; its release still checks the name: a file put in its place is left alone', async (t) => {
  const app = await build(t, env)
  const first = await make(app, 'held/1', [16])
  await release(app, first)
  await app.segments.idle()
  const reused = await make(app, 'held/2', [16])
  const ino = statSync(`/dev/shm/${reused}`).ino
  // Someone with the power to (root, or this uid) swaps the file under the segment's name.
  unlinkSync(`/dev/shm/${reused}`)
  const fd = openSync(`/dev/shm/${reused}`, 'wx', 0o600)
  closeSync(fd)
  t.equal((await release(app, reused)).statusCode, 204)
  t.ok(statSync(`/dev/shm/${reused}`).ino !== ino, 'the file put there is still there, untouched')
  t.equal(app.segments.figures().pool.segments, 0, 'and nothing went to the pool')
  unlinkSync(`/dev/shm/${reused}`)
})

t.test('a segment being read when it is released is unlinked, not recycled under its reader', async (t) => {
  const app = await build(t, env)
  const name = await make(app, 'busy/1', [8, 1024, 1024])
  await fill(app, name, 9)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await fetch(`${url}/v1/segments/${name}/data`, { headers: { accept: 'application/octet-stream' } })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let bytes = (await reader.read()).value?.length ?? 0
  t.equal((await release(app, name)).statusCode, 204)
  t.equal(app.segments.figures().pool.segments, 0, 'not kept')
  const reuse = await make(app, 'busy/2', [8, 1024, 1024])
  let nines = true
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    bytes += value.length
    if (!value.every((b) => b === 9)) nines = false
  }
  t.equal(bytes, 8 * 2 ** 20)
  t.ok(nines, 'the reader got the data as it was')
  await release(app, reuse)
})

t.test('the pool is bounded in bytes and in idle time, can be turned off, and empties at shutdown', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_POOL_BYTES: '100KiB', TENSORSHM_POOL_IDLE: '1' })
  for (const i of [1, 2, 3]) await release(app, await make(app, `b${i}/x`, [40, 1024]))
  t.equal(app.segments.figures().pool.segments, 2, 'two 40 KiB segments fit in 100 KiB; the oldest went')
  t.equal(app.segments.figures().pool.bytes, 80 * 1024)
  await app.sweeper.sweep(Date.now() + 1500)
  t.equal(app.segments.figures().pool.segments, 0, 'idle ones are unlinked by the sweeper')
  t.same(shmFiles(prefix), [])

  const off = await build(t, { ...env, TENSORSHM_POOL_BYTES: '0' })
  await release(off, await make(off, 'off/1', [8]))
  t.same(shmFiles(prefix), [], 'recycling off: release unlinks')

  const closing = await build(t, env)
  await release(closing, await make(closing, 'close/1', [8]))
  t.equal(shmFiles(prefix).length, 1)
  await closing.close()
  t.same(shmFiles(prefix), [], 'a stop leaves nothing kept')
})

t.test('a client that reallocates faster than zeroing gets spares, and a stop leaves none behind', async (t) => {
  const app = await build(t, env)
  let fresh = 0
  const inodes = new Set<bigint>()
  for (let i = 0; i < 12; i++) {
    const name = await make(app, `fast/obj-${i}`, [8, 1024, 1024])
    const ino = statSync(`/dev/shm/${name}`, { bigint: true }).ino
    if (!inodes.has(ino)) fresh++
    inodes.add(ino)
    await release(app, name)
  }
  t.ok(app.segments.figures().pool.segments >= 1 && app.segments.figures().pool.segments <= 4, `pool holds ${app.segments.figures().pool.segments} for the key (at most 4)`)
  t.ok(fresh <= 5, `${fresh} distinct files served 12 allocations`)
  t.ok(app.segments.figures().pool.hits >= 7, `${app.segments.figures().pool.hits} hits`)
  await app.close()
  t.same(shmFiles(prefix), [])
})

t.test('a large release is renamed at once and unlinked on the thread pool', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_POOL_BYTES: '0' })
  const name = await make(app, 'large/1', [32, 1024, 1024])
  t.equal((await release(app, name)).statusCode, 204)
  t.notOk(shmFiles(prefix).includes(name), 'the name is gone when DELETE answers')
  await app.sweeper.sweep()
  t.same((await app.inject({ url: '/v1/stats' })).json().leaked.orphan, { segments: 0, bytes: 0 }, 'a file being unlinked is not an orphan')
  await app.segments.idle()
  t.same(shmFiles(prefix), [])
})

checkNoLeftovers(t, prefix)
