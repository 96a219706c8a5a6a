import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, checkNoLeftovers, openFds, suitePrefix } from './helpers/build.js'
import { NOS_STANDIN } from './helpers/nos.js'
import { python } from './helpers/python.js'

// Issue #10, finding 2: a small body must not make /v1/decode open (or even look at) an unbounded number of segments.
const prefix = suitePrefix('amp')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }
const PICKLE = { 'content-type': 'application/x-python-pickle' }

interface Descriptor { name: string, shape: number[], dtype: string, nbytes: number }

async function segment (app: FastifyInstance, namespace: string): Promise<Descriptor> {
  const res = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace, tensors: { x: { shape: [3], dtype: 'uint8' } } } })
  if (res.statusCode !== 201) throw new Error(res.body)
  return res.json().segments.x
}

/**
 * Counts calls to the real `segments.open` (it still opens the real file) and the most segment fds held at once;
 * every 256th open also counts /proc/self/fd, so a decode that opens thousands in one synchronous burst is seen.
 */
function watchOpens (app: FastifyInstance): { calls: number, held: number, peakHeld: number, peakFds: number } {
  const stats = { calls: 0, held: 0, peakHeld: 0, peakFds: openFds() }
  const service = app.segments
  const open = service.open.bind(service)
  service.open = (record, writable) => {
    const handle = open(record, writable)
    stats.calls++
    stats.peakHeld = Math.max(stats.peakHeld, ++stats.held)
    if (stats.calls % 256 === 1) stats.peakFds = Math.max(stats.peakFds, openFds())
    let closed = false
    return { ...handle, close: () => { if (!closed) { closed = true; stats.held-- } handle.close() } }
  }
  return stats
}

/** The body's 'close' (which closes the segments) may come a few turns after inject has resolved. */
async function settled (stats: { held: number }): Promise<number> {
  for (let i = 0; i < 100 && stats.held > 0; i++) await new Promise((resolve) => setImmediate(resolve))
  return stats.held
}

/** The highest /proc/self/fd count seen while `run` is in flight, sampled between its asynchronous steps. */
async function peakFdsDuring<T> (run: () => Promise<T>): Promise<[T, number]> {
  let peak = openFds()
  const timer = setInterval(() => { peak = Math.max(peak, openFds()) }, 1)
  try {
    const result = await run()
    return [result, Math.max(peak, openFds())]
  } finally {
    clearInterval(timer)
  }
}

/** NOS's per-key form: each key's value is `pickle.dumps([segment] * refs)`, the segment memoized once inside. */
const perKeyBodies = async (x: Descriptor, keys: number, refs: number, sameInner: boolean): Promise<Buffer> => Buffer.from(await python<string>(NOS_STANDIN + `
import base64, json, pickle, sys
x, keys, refs, same = json.load(sys.stdin)
o = nos_object(x)
inner = pickle.dumps([o] * refs, protocol=5)
# With sameInner the outer pickle memoizes one bytes object and refers to it from every key (BINGET/LONG_BINGET).
d = {f'k{i}': inner if same else pickle.dumps([o] * refs, protocol=5) for i in range(keys)}
print(json.dumps(base64.b64encode(pickle.dumps(d, protocol=5)).decode()))`, [x, keys, refs, sameInner]), 'base64')

t.test('per-key pickles that each name one segment 4096 times: refused by the descriptor cap, no fd opened', async (t) => {
  const app = await build(t, env)
  const x = await segment(app, 'amp/perkey')
  const body = await perKeyBodies(x, 5, 4096, false)
  t.ok(body.length < 64 * 1024, `a ${body.length}-byte body`)
  const opens = watchOpens(app)
  const before = openFds()
  const [r, peak] = await peakFdsDuring(() => app.inject({ method: 'POST', url: '/v1/decode', headers: PICKLE, payload: body }))
  t.equal(r.statusCode, 400, r.body.slice(0, 300))
  t.match(r.json(), { code: 'TSHM_LIMIT_EXCEEDED', message: /^k1\[0\]: more than 4096 descriptors in one request \(TENSORSHM_MAX_DESCRIPTORS\)$/ })
  t.equal(opens.calls, 0, 'refused before any segment was opened')
  t.ok(Math.max(peak, opens.peakFds) - before <= 8, `open fds went from ${before} to at most ${Math.max(peak, opens.peakFds)}`)
  t.ok(openFds() - before <= 8, 'and nothing stayed open')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
})

t.test('JSON, 3 keys x 4096 references to one segment: over the default cap; under a raised one, the segment is opened once', async (t) => {
  const body = (x: Descriptor) => ({ a: Array(4096).fill(x), b: Array(4096).fill(x), c: Array(4096).fill(x) })

  const capped = await build(t, { ...env, TENSORSHM_BODY_LIMIT: '4MiB' })
  const x = await segment(capped, 'amp/json')
  const opens = watchOpens(capped)
  const r = await capped.inject({ method: 'POST', url: '/v1/decode', payload: body(x) })
  t.equal(r.statusCode, 400, r.body.slice(0, 300))
  t.match(r.json(), { code: 'TSHM_LIMIT_EXCEEDED', message: /^b\[0\]: more than 4096 descriptors in one request \(TENSORSHM_MAX_DESCRIPTORS\)$/ })
  t.equal(opens.calls, 0, 'refused before any segment was opened')

  const raised = await build(t, { ...env, TENSORSHM_BODY_LIMIT: '4MiB', TENSORSHM_MAX_DESCRIPTORS: '20000' })
  const y = await segment(raised, 'amp/json')
  const put = await raised.inject({ method: 'PUT', url: `/v1/segments/${y.name}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from([1, 2, 3]) })
  t.equal(put.statusCode, 204)
  const counted = watchOpens(raised)
  const before = openFds()
  const [ok, peak] = await peakFdsDuring(() => raised.inject({ method: 'POST', url: '/v1/decode', payload: body(y) }))
  t.equal(ok.statusCode, 200, ok.statusCode === 200 ? '' : ok.body.slice(0, 300))
  const decoded = ok.json() as Record<string, Array<{ shape: number[], dtype: string, data: string }>>
  for (const key of ['a', 'b', 'c']) {
    t.equal(decoded[key]?.length, 4096, `${key}: every reference answered`)
    t.ok(decoded[key]?.every((d) => d.data === 'AQID' && d.dtype === 'uint8' && d.shape[0] === 3), `${key}: with the segment's data`)
  }
  t.equal(counted.calls, 1, '12288 references, one open')
  t.equal(await settled(counted), 0, 'and it was closed')
  t.ok(Math.max(peak, counted.peakFds) - before <= 8, `open fds went from ${before} to at most ${Math.max(peak, counted.peakFds)}`)

  const npz = await raised.inject({ method: 'POST', url: '/v1/decode', headers: { accept: 'application/x-npz' }, payload: { a: Array(100).fill(y), b: y } })
  t.equal(npz.statusCode, 200)
  t.equal(counted.calls, 2, 'NPZ too: one open for 101 references')
  t.equal(await settled(counted), 0, 'and closed')
})

t.test('the answer is bounded too: one segment named again and again stops at TENSORSHM_MAX_DECODE_BYTES, before a byte is sent', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_DECODE_BYTES: '1KiB' })
  const res = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'amp/out', tensors: { x: { shape: [256], dtype: 'uint8' } } } })
  const x = res.json().segments.x as Descriptor
  const opens = watchOpens(app)
  t.equal((await app.inject({ method: 'POST', url: '/v1/decode', payload: { a: [x, x, x, x] } })).statusCode, 200, '4 x 256 bytes: within 1 KiB')
  for (const accept of ['application/json', 'application/x-npz']) {
    const over = await app.inject({ method: 'POST', url: '/v1/decode', headers: { accept }, payload: { a: [x, x, x, x], b: x } })
    t.equal(over.statusCode, 400)
    t.same(over.json(), { statusCode: 400, code: 'TSHM_LIMIT_EXCEEDED', error: 'Bad Request', message: 'tensors: the answer would carry 1280 bytes of tensor data (a segment named k times counts k times), over TENSORSHM_MAX_DECODE_BYTES (1024)' })
  }
  t.equal(await settled(opens), 0, 'what was opened to check is closed')
  await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=amp' })
})

t.test('four million references from a 17 KB pickle: refused at the first descriptor past the cap', async (t) => {
  const app = await build(t, env)
  const x = await segment(app, 'amp/million')
  const body = await perKeyBodies(x, 1000, 4096, true)
  t.ok(body.length < 20 * 1024, `a ${body.length}-byte body`)
  const opens = watchOpens(app)
  const r = await app.inject({ method: 'POST', url: '/v1/decode', headers: PICKLE, payload: body })
  t.equal(r.statusCode, 400, r.body.slice(0, 300))
  // k0 holds descriptors 1-4096; naming k1[0] says that descriptor 4097 was the last one looked at.
  t.match(r.json(), { code: 'TSHM_LIMIT_EXCEEDED', message: /^k1\[0\]: more than 4096 descriptors in one request \(TENSORSHM_MAX_DESCRIPTORS\)$/ })
  t.equal(opens.calls, 0)
})

t.test('nested per-key pickles share one budget with the outer pickle', async (t) => {
  const app = await build(t, env)
  // 30 lists of 3000 ints: 90031 values, under the parser's 100000 alone.
  const bodies = await python<Record<string, string>>(`
import base64, json, pickle
inner = lambda i: pickle.dumps([[(i + j) % 256 for j in range(3000)] for _ in range(30)], protocol=5)
body = lambda n: base64.b64encode(pickle.dumps({f'k{i}': inner(i) for i in range(n)}, protocol=5)).decode()
print(json.dumps({'one': body(1), 'three': body(3)}))`)
  const post = (b64: string | undefined) => app.inject({ method: 'POST', url: '/v1/decode', headers: PICKLE, payload: Buffer.from(b64 ?? '', 'base64') })
  const one = await post(bodies.one)
  t.equal(one.statusCode, 200, 'one such per-key pickle is fine')
  t.equal((one.json() as { k0: number[][] }).k0.length, 30)
  const three = await post(bodies.three)
  t.equal(three.statusCode, 400, three.body.slice(0, 300))
  t.match(three.json(), { code: 'TSHM_LIMIT_EXCEEDED', message: /^k1: pickle: more than 100000 values .*\(maxItems\)/ })
})

checkNoLeftovers(t, prefix)
