import t from 'tap'
import { existsSync } from 'node:fs'
import { defaultStateDir } from '../src/config.js'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { poll, runService, startService } from './helpers/server.js'

const prefix = suitePrefix('server')

const post = async (url: string, body: unknown) => await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} finishes, releases every segment and exits 0`, async (t) => {
    const server = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix })
    const res = await post(`${server.url}/v1/segments`, { namespace: 'srv', tensors: { a: { shape: [1024], dtype: 'uint8' }, b: [{ shape: [3], dtype: 'f4' }] } })
    t.equal(res.status, 201)
    t.equal(shmFiles(prefix).length, 2)
    t.equal((await fetch(`${server.url}/readyz`)).status, 200)
    server.child.kill(signal)
    t.equal(await server.exited, 0)
    t.same(shmFiles(prefix), [])
    t.match(server.log(), /segments released at shutdown/)
  })
}

t.test('a second signal (npm start forwards the one it got) still leaves nothing behind', async (t) => {
  const server = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix })
  const made = await post(`${server.url}/v1/segments`, { namespace: 'twice', tensors: { a: { shape: [64, 1024], dtype: 'uint8' }, b: { shape: [32, 1024, 1024], dtype: 'uint8' } } })
  t.equal(made.status, 201)
  const { a, b } = (await made.json() as { segments: Record<'a' | 'b', { name: string }> }).segments
  t.equal((await fetch(`${server.url}/v1/segments/${a.name}`, { method: 'DELETE' })).status, 204, 'one released into the pool')
  // A download left hanging keeps the graceful close waiting, so the second signal lands in the middle of it.
  const slow = await fetch(`${server.url}/v1/segments/${b.name}/data`, { headers: { accept: 'application/octet-stream' } })
  const reader = (slow.body as ReadableStream<Uint8Array>).getReader()
  await reader.read()
  server.child.kill('SIGTERM')
  await poll('the graceful close to begin', async () => { if (!server.log().includes('"msg":"closing"')) throw new Error('not yet') }, { timeoutMs: 10_000, intervalMs: 5 })
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 1, 'close-with-grace exits at once on a second signal')
  await reader.cancel().catch(() => {})
  t.match(server.log(), /releasing synchronously/)
  t.same(shmFiles(prefix), [], 'live and pooled segments all gone')
  t.notOk(existsSync(defaultStateDir(prefix)), 'and the journal with them: nothing was left to remember')
})

t.test('an uncaught error exits without releasing anything: the next start recovers every segment', async (t) => {
  const state = stateDir(t)
  // A bug, delivered on demand: the preload throws from a signal handler, outside any request.
  const preload = encodeURIComponent('process.on("SIGUSR2", () => { throw new Error("a bug") })')
  const bug = { NODE_OPTIONS: `--import=data:text/javascript,${preload}`, TENSORSHM_STATE_DIR: state, TENSORSHM_SEGMENT_PREFIX: prefix }
  const first = await startService(t, bug)
  const made = await post(`${first.url}/v1/segments`, { namespace: 'crash', tensors: { a: { shape: [64], dtype: 'uint8' } } })
  const name = (await made.json() as { segments: { a: { name: string } } }).segments.a.name
  first.child.kill('SIGUSR2')
  t.equal(await first.exited, 70)
  t.match(first.log(), /uncaught error: exiting without releasing segments/)
  t.same(shmFiles(prefix), [name], 'the segment is still there')
  const second = await startService(t, { TENSORSHM_STATE_DIR: state, TENSORSHM_SEGMENT_PREFIX: prefix })
  t.equal((await fetch(`${second.url}/v1/segments/${name}`)).status, 200, 'and known again after a restart')
  second.child.kill('SIGTERM')
  t.equal(await second.exited, 0)
})

t.test('one log line per request: method, URL, route, status, duration and request id', async (t) => {
  const server = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix })
  const made = await post(`${server.url}/v1/segments`, { namespace: 'logged', tensors: { a: { shape: [8], dtype: 'uint8' } } })
  const name = (await made.json() as { segments: { a: { name: string } } }).segments.a.name
  t.equal((await fetch(`${server.url}/v1/segments/${name}`, { method: 'DELETE' })).status, 204)
  // Lines are buffered (src/log-destination.ts): they come within its flush interval.
  const lines = await poll('two request lines', async () => {
    const found = server.log().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    if (found.length < 2) throw new Error(`${found.length} so far`)
    return found
  }, { timeoutMs: 5000, intervalMs: 50 })
  const fields = (l: Record<string, unknown>) => ({ method: l.method, url: l.url, route: l.route, statusCode: l.statusCode })
  t.same(lines.map(fields), [
    { method: 'POST', url: '/v1/segments', route: '/v1/segments', statusCode: 201 },
    { method: 'DELETE', url: `/v1/segments/${name}`, route: '/v1/segments/:name', statusCode: 204 }
  ])
  for (const l of lines) {
    t.type(l.ms, 'number')
    t.match(l.reqId, /^req-/)
  }
  t.notMatch(server.log(), /incoming request|request completed/, 'Fastify\'s own two lines per request are off')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('a bad configuration value stops the start, naming the variable', async (t) => {
  const { code, output } = await runService({ TENSORSHM_PORT: 'eighty', TENSORSHM_SEGMENT_PREFIX: prefix })
  t.equal(code, 2)
  t.match(output, /invalid configuration: TENSORSHM_PORT: "eighty" is not an integer/)
  const mode = await runService({ TENSORSHM_SEGMENT_MODE: '0400', TENSORSHM_SEGMENT_PREFIX: prefix })
  t.equal(mode.code, 2)
  t.match(mode.output, /TENSORSHM_SEGMENT_MODE/)
})

checkNoLeftovers(t, prefix)
