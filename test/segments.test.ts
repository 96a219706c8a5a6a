import t from 'tap'
import { closeSync, readSync } from 'node:fs'
import * as shm from '../native/shm.js'
import { newSegmentName } from '../src/segments/names.js'
import { SegmentService } from '../src/segments/service.js'
import { ANONYMOUS } from '../src/segments/caller.js'
import { build, checkNoLeftovers, openJournal, shmFiles, suitePrefix } from './helpers/build.js'
import { python } from './helpers/python.js'

const prefix = suitePrefix('segments')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }

interface Descriptor { name: string, shape: number[], dtype: string, nbytes: number }

const readSegment = (name: string, length: number): Buffer => {
  const fd = shm.open(name, false)
  try {
    const buf = Buffer.alloc(length)
    readSync(fd, buf, 0, length, 0)
    return buf
  } finally { closeSync(fd) }
}

t.test('a Python process attaches to every dtype and its bytes land in the segment', async (t) => {
  const app = await build(t, env)
  const spellings = ['bool', '?', 'int8', 'i1', 'int16', '<i2', '>i2', 'int32', 'i4', 'int64', '>i8', 'uint8', '|u1', 'uint16', '>u2',
    'uint32', 'u4', 'uint64', 'float16', '<f2', 'float32', '<f4', '>f4', 'float64', 'd', 'complex64', '>c8', 'complex128', 'D']
  const tensors = Object.fromEntries(spellings.map((dtype, i) => [`t${i}`, { shape: [2, 3], dtype }]))
  const res = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'py/dtypes', tensors } })
  t.equal(res.statusCode, 201)
  const segments = res.json().segments as Record<string, Descriptor>
  const written = await python<Record<string, { hex: string, same: boolean }>>(`
import json, sys
import numpy as np
from multiprocessing import resource_tracker, shared_memory
req = json.load(sys.stdin)
out = {}
for key, d in req['segments'].items():
    shm = shared_memory.SharedMemory(name=d['name'])
    resource_tracker.unregister(shm._name, 'shared_memory')
    a = np.ndarray(d['shape'], np.dtype(d['dtype']), buffer=shm.buf)
    a[...] = (np.arange(a.size) + 1).reshape(a.shape).astype(a.dtype)
    out[key] = {'hex': a.tobytes().hex(), 'same': np.dtype(d['dtype']) == np.dtype(req['asked'][key])}
    del a
    shm.close()
print(json.dumps(out))
`, { segments, asked: Object.fromEntries(spellings.map((d, i) => [`t${i}`, d])) })
  for (const [key, d] of Object.entries(segments)) {
    t.ok(written[key]?.same, `${key}: np.dtype(${d.dtype}) round-trips`)
    t.equal(readSegment(d.name, d.nbytes).toString('hex'), written[key]?.hex, `${key} (${d.dtype}) bytes`)
  }
  t.same(Object.fromEntries(Object.entries(segments).map(([k, d]) => [k, d.dtype])), {
    t0: 'bool',
    t1: 'bool',
    t2: 'int8',
    t3: 'int8',
    t4: 'int16',
    t5: 'int16',
    t6: '>i2',
    t7: 'int32',
    t8: 'int32',
    t9: 'int64',
    t10: '>i8',
    t11: 'uint8',
    t12: 'uint8',
    t13: 'uint16',
    t14: '>u2',
    t15: 'uint32',
    t16: 'uint32',
    t17: 'uint64',
    t18: 'float16',
    t19: 'float16',
    t20: 'float32',
    t21: 'float32',
    t22: '>f4',
    t23: 'float64',
    t24: 'float64',
    t25: 'complex64',
    t26: '>c8',
    t27: 'complex128',
    t28: 'complex128'
  })
})

t.test('the NOS image: (1, 480, 640, 3) uint8, written through SharedMemory, listed by the service', async (t) => {
  const app = await build(t, env)
  const res = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'client/obj', tensors: { images: [{ shape: [1, 480, 640, 3], dtype: 'uint8' }], zero: { shape: [0, 3], dtype: 'float32' } } } })
  t.equal(res.statusCode, 201)
  const body = res.json()
  const img = body.segments.images[0] as Descriptor
  t.match(img, { shape: [1, 480, 640, 3], dtype: 'uint8', nbytes: 921600 })
  t.match(img.name, new RegExp(`^${prefix}[0-9a-f]{16}$`))
  const sum = await python<number[]>(`
import json, sys
import numpy as np
from multiprocessing import resource_tracker, shared_memory
d = json.load(sys.stdin)
out = []
for desc in d:
    shm = shared_memory.SharedMemory(name=desc['name'])
    resource_tracker.unregister(shm._name, 'shared_memory')
    a = np.ndarray(desc['shape'], desc['dtype'], buffer=shm.buf)
    a[...] = 200
    out.append(int(a.sum()))
    del a
    shm.close()
print(json.dumps(out))
`, [img, body.segments.zero])
  t.same(sum, [921600 * 200, 0], 'the image and the zero-size tensor both attach')
  t.equal(readSegment(img.name, 4).toString('hex'), 'c8c8c8c8')
  const list = await app.inject({ url: '/v1/segments?namespace=client' })
  t.equal(list.statusCode, 200)
  t.same(list.json().segments.map((s: Descriptor) => s.name).sort(), [img.name, body.segments.zero.name].sort())
  const one = await app.inject({ url: `/v1/segments/${img.name}` })
  t.match(one.json(), { name: img.name, namespace: 'client/obj', key: 'images', index: 0, size: 921600, present: true })
  t.ok(Date.parse(one.json().created_at) <= Date.now())
  t.equal(shm.stat(shm.open(img.name, false)).mode & 0o777, 0o600, 'mode 0600 by default')
})

t.test('releasing a namespace works on / boundaries', async (t) => {
  const app = await build(t, env)
  const names: Record<string, string> = {}
  for (const ns of ['ns/a', 'ns/a/x', 'ns/a/x/y', 'ns/ab', 'ns/b']) {
    const r = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: ns, tensors: { k: { shape: [4], dtype: 'uint8' } } } })
    t.equal(r.statusCode, 201)
    names[ns] = r.json().segments.k.name
  }
  const released = await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=ns/a' })
  t.same(released.json(), { released: 3 })
  const left = (await app.inject({ url: '/v1/segments?namespace=ns' })).json().segments.map((s: { namespace: string }) => s.namespace).sort()
  t.same(left, ['ns/ab', 'ns/b'])
  t.same((await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=ns/a' })).json(), { released: 0 })
  const files = shmFiles(prefix)
  t.same(['ns/a', 'ns/a/x', 'ns/a/x/y', 'ns/ab', 'ns/b'].map((ns) => files.includes(names[ns] ?? '')), [false, false, false, true, true], 'released names are gone from /dev/shm')
  t.same((await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=ns' })).json(), { released: 2 })
  t.same(shmFiles(prefix).filter((f) => Object.values(names).includes(f)), [])
  t.equal(shmFiles(prefix).length, app.segments.figures().pool.segments, 'what remains is kept for reuse, and counted')
})

t.test('creates in flight in one namespace: a key taken by one is a 409 for the other, other keys go ahead', async (t) => {
  const app = await build(t, env)
  const create = (tensors: object) => app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'inflight', tensors } })
  const spec = { shape: [4], dtype: 'uint8' }
  // All three are in flight together: each waits for the journal's write, after the turn that checked its keys.
  const [first, second, third] = await Promise.all([create({ a: spec, b: spec }), create({ c: spec, a: spec }), create({ d: spec })])
  t.same([first?.statusCode, second?.statusCode, third?.statusCode], [201, 409, 201])
  t.same(second?.json(), { statusCode: 409, code: 'TSHM_DUPLICATE_KEY', error: 'Conflict', message: 'tensors.a: the key is already registered in namespace "inflight"' })
  const listed = () => app.inject({ url: '/v1/segments?namespace=inflight' }).then((r) => r.json().segments.map((s: { key: string }) => s.key).sort())
  t.same(await listed(), ['a', 'b', 'd'], 'the refused create made nothing, not even its free key')
  // Nothing stays reserved once they are done: the refused key is free, and a released one can be taken again.
  t.equal((await create({ c: spec })).statusCode, 201)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=inflight' })).statusCode, 200)
  t.equal((await create({ a: spec })).statusCode, 201)
  t.same(await listed(), ['a'])
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=inflight' })).statusCode, 200)
})

t.test('duplicates, unknown and malformed names', async (t) => {
  const app = await build(t, env)
  const create = (tensors: object) => app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'dup', tensors } })
  t.equal((await create({ a: { shape: [1], dtype: 'uint8' } })).statusCode, 201)
  const before = shmFiles(prefix)
  const dup = await create({ b: { shape: [1], dtype: 'uint8' }, a: { shape: [2], dtype: 'uint8' } })
  t.equal(dup.statusCode, 409)
  t.same(dup.json(), { statusCode: 409, code: 'TSHM_DUPLICATE_KEY', error: 'Conflict', message: 'tensors.a: the key is already registered in namespace "dup"' })
  t.same(shmFiles(prefix), before, 'a 409 creates nothing')
  const unknown = `${prefix}0123456789abcdef`
  for (const method of ['GET', 'DELETE'] as const) {
    const r = await app.inject({ method, url: `/v1/segments/${unknown}` })
    t.same(r.json(), { statusCode: 404, code: 'TSHM_SEGMENT_NOT_FOUND', error: 'Not Found', message: 'name: no segment of this service has that name' })
  }
  for (const bad of ['other_0123456789abcdef', `${prefix}0123456789ABCDEF`, `${prefix}0123`, `${prefix}0123456789abcdef0`, `${prefix}%00abc`, `${'a'.repeat(300)}`, '..%2Fetc']) {
    const r = await app.inject({ url: `/v1/segments/${bad}` })
    t.equal(r.statusCode, 400, bad)
    t.equal(r.json().code, 'TSHM_INVALID_NAME', bad)
  }
  const r = await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=dup' })
  t.same(r.json(), { released: 1 })
})

t.test('every rejected spec is a 400 naming the field, and /dev/shm is left as it was', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_SEGMENT_BYTES: '1MiB' })
  const ok = { shape: [2], dtype: 'uint8' }
  const cases: Array<[string, unknown, RegExp]> = [
    ['object dtype', { shape: [1], dtype: 'object' }, /tensors\.x\.dtype/],
    ['structured dtype', { shape: [1], dtype: '[("a", "<i4")]' }, /tensors\.x\.dtype/],
    ['string dtype', { shape: [1], dtype: '<U8' }, /tensors\.x\.dtype/],
    ['unknown dtype', { shape: [1], dtype: 'float7' }, /tensors\.x\.dtype/],
    ['longdouble', { shape: [1], dtype: 'float128' }, /tensors\.x\.dtype/],
    ['dtype not a string', { shape: [1], dtype: 4 }, /tensors\.x\.dtype/],
    ['negative dim', { shape: [2, -1], dtype: 'uint8' }, /tensors\.x\.shape\[1\]/],
    ['fractional dim', { shape: [1.5], dtype: 'uint8' }, /tensors\.x\.shape\[0\]/],
    ['string dim', { shape: ['3'], dtype: 'uint8' }, /tensors\.x\.shape\[0\]/],
    ['null dim', { shape: [null], dtype: 'uint8' }, /tensors\.x\.shape\[0\]/],
    ['boolean dim', { shape: [true], dtype: 'uint8' }, /tensors\.x\.shape\[0\]/],
    ['shape not an array', { shape: 3, dtype: 'uint8' }, /tensors\.x\.shape/],
    ['33 dims', { shape: new Array(33).fill(1), dtype: 'uint8' }, /tensors\.x\.shape/],
    ['over the segment limit', { shape: [1024, 1025], dtype: 'uint8' }, /tensors\.x\.shape.*TENSORSHM_MAX_SEGMENT_BYTES/],
    ['overflowing product', { shape: [2 ** 40, 2 ** 40], dtype: 'float64' }, /tensors\.x\.shape/],
    ['overflow hidden by a zero dim', { shape: [0, 2 ** 40, 2 ** 40], dtype: 'uint8' }, /tensors\.x\.shape/],
    ['unknown field', { shape: [1], dtype: 'uint8', order: 'F' }, /tensors\.x.*order/],
    ['missing dtype', { shape: [1] }, /tensors\.x\.dtype/],
    ['a bad item in a list', [ok, { shape: [-3], dtype: 'uint8' }], /tensors\.x\[1\]\.shape\[0\]/],
    ['an empty list', [], /tensors\.x/]
  ]
  const before = shmFiles(prefix)
  for (const [label, spec, field] of cases) {
    const r = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'bad', tensors: { first: ok, x: spec } } })
    t.equal(r.statusCode, 400, label)
    t.match(r.json(), { statusCode: 400, code: /^TSHM_INVALID_(REQUEST|SPEC)$/, error: 'Bad Request', message: field }, label)
  }
  const bodies: Array<[string, unknown, RegExp]> = [
    ['no namespace', { tensors: { x: ok } }, /namespace/],
    ['empty namespace', { namespace: '', tensors: { x: ok } }, /namespace/],
    ['namespace with //', { namespace: 'a//b', tensors: { x: ok } }, /namespace/],
    ['namespace with a trailing /', { namespace: 'a/', tensors: { x: ok } }, /namespace/],
    ['no tensors', { namespace: 'a', tensors: {} }, /tensors/],
    ['bad key', { namespace: 'a', tensors: { 'a b': ok } }, /tensors/],
    ['not an object', [1, 2], /body/]
  ]
  for (const [label, payload, field] of bodies) {
    const r = await app.inject({ method: 'POST', url: '/v1/segments', payload: payload as object })
    t.equal(r.statusCode, 400, label)
    t.match(r.json().message, field, label)
  }
  const garbage = await app.inject({ method: 'POST', url: '/v1/segments', headers: { 'content-type': 'application/json' }, payload: '{"namespace": ' })
  t.same(garbage.json(), { statusCode: 400, code: 'TSHM_INVALID_JSON', error: 'Bad Request', message: 'body: not valid JSON (Unexpected end of JSON input)' }, 'the parser\'s reason, not one sentence for every failure')
  // Valid JSON that secure-json-parse refuses: said so, not called invalid JSON; in the decode route too.
  const poisoned = 'body: a key "__proto__", or a key "prototype" inside a key "constructor", is refused in JSON bodies: it would set an object\'s prototype (so no tensor can be keyed "__proto__")'
  const proto = await app.inject({ method: 'POST', url: '/v1/segments', headers: { 'content-type': 'application/json' }, payload: '{"namespace": "n", "tensors": {"__proto__": {"shape": [1], "dtype": "uint8"}}}' })
  t.same(proto.json(), { statusCode: 400, code: 'TSHM_INVALID_JSON', error: 'Bad Request', message: poisoned })
  const ctor = await app.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/json' }, payload: '{"x": {"constructor": {"prototype": {}}}}' })
  t.same(ctor.json(), { statusCode: 400, code: 'TSHM_INVALID_JSON', error: 'Bad Request', message: poisoned })
  const text = await app.inject({ method: 'POST', url: '/v1/segments', headers: { 'content-type': 'text/plain' }, payload: 'hello' })
  t.match(text.json(), { statusCode: 415, code: 'TSHM_UNSUPPORTED_MEDIA_TYPE' })
  t.same(shmFiles(prefix), before, 'no rejected request created or removed a file')
  // `constructor` alone is a key like any other.
  const named = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'ctor', tensors: { constructor: { shape: [1], dtype: 'uint8' } } } })
  t.equal(named.statusCode, 201)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=ctor' })).json().released, 1)
})

t.test('creation is all or nothing', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_SEGMENT_BYTES: '1TiB' })
  const { total } = shm.capacity()
  const r = await app.inject({
    method: 'POST',
    url: '/v1/segments',
    payload: { namespace: 'aon', tensors: { small: [{ shape: [1024], dtype: 'uint8' }, { shape: [8], dtype: 'uint8' }], huge: { shape: [total + 1], dtype: 'uint8' } } }
  })
  t.equal(r.statusCode, 507)
  t.match(r.json(), { code: 'TSHM_INSUFFICIENT_STORAGE', message: /do not fit in the [0-9]+ bytes free on \/dev\/shm/ })
  t.same(shmFiles(prefix), [], 'refused before anything was created')

  // A failure half-way, from libc itself: the third name is taken (O_EXCL says EEXIST on every retry).
  const taken = `${prefix}00000000000000ff`
  shm.close(shm.createExclusive(taken, 0o600))
  const names = [`${prefix}0000000000000001`, `${prefix}0000000000000002`, taken, taken, taken, taken]
  const service = new SegmentService(app.config, app.log, openJournal(t, prefix), { names: () => names.shift() ?? newSegmentName(prefix) })
  await t.rejects(service.create({ namespace: 'aon', tensors: { a: [{ shape: [4], dtype: 'uint8' }, { shape: [4], dtype: 'uint8' }], b: { shape: [4], dtype: 'uint8' } } }, ANONYMOUS),
    { name: 'SysError', code: 'EEXIST', syscall: 'shm_open' })
  t.same(shmFiles(prefix), [taken], 'the two segments created before the failure were removed, and the other file left alone')
  t.equal(service.figures().segments, 0)
  t.equal((await service.create({ namespace: 'aon', tensors: { a: { shape: [1], dtype: 'uint8' } } }, ANONYMOUS)).namespace, 'aon', 'the keys are free again')
  await service.close()
  shm.unlink(taken)
  t.same(shmFiles(prefix), [])
})

t.test('a segment unlinked behind the service\'s back is reported absent', async (t) => {
  const app = await build(t, env)
  const r = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'gone', tensors: { k: { shape: [8], dtype: 'uint8' } } } })
  const name = r.json().segments.k.name as string
  shm.unlink(name)
  t.equal((await app.inject({ url: `/v1/segments/${name}` })).json().present, false)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/segments/${name}` })).statusCode, 204)
})

t.test('closing releases every segment, unless configured to keep them', async (t) => {
  const app = await build(t, env)
  await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'close', tensors: { k: [{ shape: [8], dtype: 'uint8' }, { shape: [8], dtype: 'uint8' }] } } })
  t.equal(shmFiles(prefix).length, 2)
  await app.close()
  t.same(shmFiles(prefix), [])
  const keep = await build(t, { ...env, TENSORSHM_KEEP_ON_SHUTDOWN: 'true' })
  const r = await keep.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'close', tensors: { k: { shape: [8], dtype: 'uint8' } } } })
  await keep.close()
  t.same(shmFiles(prefix), [r.json().segments.k.name])
  shm.unlink(r.json().segments.k.name)
})

t.test('the mode is set with fchmod whatever the umask, and the owner with fchown', async (t) => {
  const old = process.umask(0o077)
  t.teardown(() => { process.umask(old) })
  const app = await build(t, { ...env, TENSORSHM_SEGMENT_MODE: '0660', TENSORSHM_SEGMENT_OWNER: `${process.getuid?.() ?? 0}:1` })
  const r = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'perm', tensors: { k: { shape: [8], dtype: 'uint8' } } } })
  const fd = shm.open(r.json().segments.k.name, false)
  const st = shm.stat(fd)
  shm.close(fd)
  t.equal(st.mode & 0o777, 0o660, 'a umask of 077 would have left 0600')
  t.equal(st.gid, 1)
  t.equal(st.uid, process.getuid?.() ?? 0)
})

checkNoLeftovers(t, prefix)
