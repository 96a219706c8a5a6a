import t from 'tap'
import { createHash } from 'node:crypto'
import { build, checkNoLeftovers, create, type Descriptor, suitePrefix } from './helpers/build.js'
import { NOS_STANDIN } from './helpers/nos.js'
import { python } from './helpers/python.js'

const prefix = suitePrefix('decode')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }
const DTYPES = ['bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32', 'float64', 'complex64', 'complex128', '>i4', '>f8', '>c16']

/** Python fills every segment with random values of its dtype and reports each one's sha256. */
const fill = (segments: object) => python<Record<string, string | string[]>>(`
import hashlib, json, sys
import numpy as np
from multiprocessing import resource_tracker, shared_memory
rng = np.random.default_rng(7)
def one(d):
    s = shared_memory.SharedMemory(name=d['name'])
    resource_tracker.unregister(s._name, 'shared_memory')
    a = np.ndarray(d['shape'], d['dtype'], buffer=s.buf)
    a[...] = rng.integers(0, 256, a.nbytes, dtype=np.uint8).view(a.dtype).reshape(a.shape)
    h = hashlib.sha256(a.tobytes()).hexdigest()
    del a; s.close()
    return h
print(json.dumps({k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in json.load(sys.stdin).items()}))`, segments)

t.test('every dtype decodes bit-exact from JSON and from pickles at protocols 2-5, as JSON and as NPZ', async (t) => {
  const app = await build(t, env)
  const tensors: Record<string, object> = Object.fromEntries(DTYPES.map((dtype, i) => [`t${i}`, { shape: [3, 2], dtype }]))
  tensors.images = [{ shape: [2, 4, 3], dtype: 'uint8' }, { shape: [2, 4, 3], dtype: 'uint8' }]
  tensors.empty = { shape: [0, 3], dtype: 'float32' }
  const segments = await create(app, 'dec/all', tensors)
  const hashes = await fill(segments)
  const bodies = await python<Record<string, string>>(NOS_STANDIN + `
import base64, json, pickle, sys
segs = json.load(sys.stdin)
d = {k: [nos_object(x) for x in v] if isinstance(v, list) else nos_object(v) for k, v in segs.items()}
d['prompt'] = 'a cat'
d['n'] = 2 ** 70
d['raw'] = b'\\x00\\xff'
d['nested'] = {'a': (1, 2.5, None, True), 'b': [b'x']}
out = {f'p{p}': base64.b64encode(pickle.dumps(d, protocol=p)).decode() for p in (2, 3, 4, 5)}
out['perkey'] = base64.b64encode(pickle.dumps({k: pickle.dumps(v, protocol=5) for k, v in d.items()}, protocol=5)).decode()
print(json.dumps(out))`, segments)
  const passthrough = { prompt: 'a cat', n: 2n ** 70n, raw: { __bytes__: 'AP8=' }, nested: { a: [1, 2.5, null, true], b: [{ __bytes__: 'eA==' }] } }

  const requests: Array<[string, { payload: string | Buffer, headers: Record<string, string> }]> = [
    ['json', { payload: JSON.stringify({ ...segments, prompt: 'a cat' }), headers: { 'content-type': 'application/json' } }],
    ...Object.entries(bodies).map(([k, b64]): [string, { payload: Buffer, headers: Record<string, string> }] =>
      [k, { payload: Buffer.from(b64, 'base64'), headers: { 'content-type': 'application/x-python-pickle' } }])
  ]
  for (const [label, req] of requests) {
    const asJson = await app.inject({ method: 'POST', url: '/v1/decode', ...req })
    t.equal(asJson.statusCode, 200, `${label} json: ${asJson.statusCode === 200 ? '' : asJson.body}`)
    t.equal(asJson.headers['content-type'], 'application/json')
    const body = JSON.parse(asJson.body)
    for (const [key, want] of Object.entries(hashes)) {
      const got = [body[key]].flat().map((x: { data: string }) => createHash('sha256').update(Buffer.from(x.data, 'base64')).digest('hex'))
      t.same(got, [want].flat(), `${label} json ${key}`)
    }
    t.same(body.t14, { shape: [3, 2], dtype: '>i4', data: body.t14.data }, `${label}: shape and canonical dtype`)
    if (label === 'json') t.equal(body.prompt, 'a cat')
    else {
      t.match(asJson.body, /"n":1180591620717411303424[,}]/, `${label}: a 2**70 passthrough keeps every digit`)
      t.same({ ...body, n: 2n ** 70n }, { ...body, ...passthrough }, `${label}: passthrough values`)
    }

    const asNpz = await app.inject({ method: 'POST', url: '/v1/decode', ...req, headers: { ...req.headers, accept: 'application/x-npz' } })
    t.equal(asNpz.statusCode, 200, `${label} npz`)
    t.equal(Number(asNpz.headers['content-length']), asNpz.rawPayload.length, `${label}: Content-Length is exact`)
    const loaded = await python<{ hashes: Record<string, string>, dtypes: Record<string, string>, passthrough: unknown }>(`
import base64, hashlib, io, json, sys
import numpy as np
z = np.load(io.BytesIO(base64.b64decode(json.load(sys.stdin))))
print(json.dumps({'hashes': {k: hashlib.sha256(z[k].tobytes()).hexdigest() for k in z.files if k != '__passthrough__'},
  'dtypes': {k: str(z[k].dtype) for k in z.files}, 'passthrough': json.loads(z['__passthrough__'].tobytes())}))`, asNpz.rawPayload.toString('base64'))
    for (const [key, want] of Object.entries(hashes)) {
      if (Array.isArray(want)) want.forEach((h, i) => t.equal(loaded.hashes[`${key}.${i}`], h, `${label} npz ${key}.${i}`))
      else t.equal(loaded.hashes[key], want, `${label} npz ${key}`)
    }
    t.equal(loaded.dtypes.t16, '>c16')
    if (label === 'json') t.same(loaded.passthrough, { prompt: 'a cat' })
    else t.same(loaded.passthrough, { ...passthrough, n: 1180591620717411303424 }, `${label}: passthrough in __passthrough__`)
  }
})

t.test('descriptors are checked against the registry: bad names 400, unknown 404, mismatches 422', async (t) => {
  const app = await build(t, env)
  const { x } = await create(app, 'dec/check', { x: { shape: [4, 4], dtype: 'float32' } }) as { x: Descriptor }
  const decode = (body: object) => app.inject({ method: 'POST', url: '/v1/decode', payload: body })
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['another prefix', { k: { ...x, name: 'nos_psm_0123456789abcdef' } }, 400, 'TSHM_INVALID_NAME', /k\.name/],
    ['a slash', { k: { ...x, name: `${prefix}/../x` } }, 400, 'TSHM_INVALID_NAME', /slash/],
    ['a // form', { k: { ...x, name: `//${x.name}` } }, 400, 'TSHM_INVALID_NAME', /slash/],
    ['a NUL byte', { k: { ...x, name: `${x.name}\u0000` } }, 400, 'TSHM_INVALID_NAME', /NUL/],
    ['over-long', { k: { ...x, name: prefix + 'a'.repeat(300) } }, 400, 'TSHM_INVALID_NAME', /longer/],
    ['upper-case hex', { k: { ...x, name: x.name.toUpperCase() } }, 400, 'TSHM_INVALID_NAME', /k\.name/],
    ['unknown', { k: { ...x, name: `${prefix}0000000000000000` } }, 404, 'TSHM_SEGMENT_NOT_FOUND', /^k\.name: no segment of this service has that name$/],
    ['shape', { k: { ...x, shape: [16] } }, 422, 'TSHM_SPEC_MISMATCH', /k\.shape/],
    ['dtype', { k: { ...x, dtype: 'float64' } }, 422, 'TSHM_SPEC_MISMATCH', /k\.dtype/],
    ['byte order', { k: { ...x, dtype: '>f4' } }, 422, 'TSHM_SPEC_MISMATCH', /k\.dtype/],
    ['nbytes', { k: { ...x, nbytes: 1 } }, 422, 'TSHM_SPEC_MISMATCH', /k\.nbytes/],
    ['in a list', { k: [x, { ...x, shape: [4] }] }, 422, 'TSHM_SPEC_MISMATCH', /k\[1\]\.shape/],
    ['bad types', { k: { name: x.name, shape: 'x', dtype: 'float32' } }, 400, 'TSHM_INVALID_DESCRIPTOR', /k\.shape/],
    ['mixed list', { k: [x, 3] }, 400, 'TSHM_INVALID_DESCRIPTOR', /mixes/]
  ]
  for (const [label, body, status, code, message] of cases) {
    const r = await decode(body)
    t.equal(r.statusCode, status, label)
    t.match(r.json(), { code, message }, label)
  }
  t.equal((await decode({ k: { ...x, dtype: '<f4' } })).statusCode, 200, 'an equivalent dtype spelling is the same dtype')
  t.same((await decode({ a: 1, b: [1, 2], c: { d: null } })).json(), { a: 1, b: [1, 2], c: { d: null } }, 'a dict without descriptors passes through')
})

t.test('hostile pickles and limits', async (t) => {
  const app = await build(t, { ...env, TENSORSHM_MAX_DICT_KEYS: '8', TENSORSHM_MAX_LIST_LENGTH: '8', TENSORSHM_MAX_DEPTH: '4', TENSORSHM_BODY_LIMIT: '64KiB' })
  const { x } = await create(app, 'dec/hostile', { x: { shape: [2], dtype: 'uint8' } }) as { x: Descriptor }
  const bodies = await python<Record<string, string>>(NOS_STANDIN + `
import base64, json, os, pickle, sys
x = json.load(sys.stdin)
class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned > /tmp/tshm-pwned',))
good = pickle.dumps({'x': nos_object(x)}, protocol=5)
out = {
  'os.system': pickle.dumps({'x': Evil()}, protocol=2),
  'builtins.eval': b'\\x80\\x04\\x8c\\x08builtins\\x94\\x8c\\x04eval\\x94\\x93\\x94\\x8c\\x011\\x94\\x85\\x94R\\x94.',
  'perkey-evil': pickle.dumps({'x': pickle.dumps(Evil(), protocol=4)}, protocol=4),
  'truncated': good[:len(good) // 2],
  'garbage': bytes([255]) + os.urandom(63),  # 0xff is no opcode: random bytes could otherwise start with one that names a global
  'empty': b'',
  'not a dict': pickle.dumps([1, 2, 3], protocol=5),
  'deep': pickle.dumps({'x': [[[[[[1]]]]]]}, protocol=5),
  'long list': pickle.dumps({'x': list(range(9))}, protocol=5),
  'many keys': pickle.dumps({str(i): i for i in range(9)}, protocol=5),
  'too big': pickle.dumps({'x': 'a' * 70000}, protocol=5),
}
print(json.dumps({k: base64.b64encode(v).decode() for k, v in out.items()}))`, x)
  const expected: Record<string, [number, string, RegExp]> = {
    'os.system': [422, 'TSHM_PICKLE_REFUSED', /(posix|os)\.system/],
    'builtins.eval': [422, 'TSHM_PICKLE_REFUSED', /builtins\.eval/],
    'perkey-evil': [422, 'TSHM_PICKLE_REFUSED', /x: .*system/],
    truncated: [400, 'TSHM_INVALID_PICKLE', /pickle/],
    garbage: [400, 'TSHM_INVALID_PICKLE', /pickle/],
    empty: [400, 'TSHM_INVALID_PICKLE', /pickle/],
    'not a dict': [400, 'TSHM_INVALID_DESCRIPTOR', /dict/],
    deep: [400, 'TSHM_LIMIT_EXCEEDED', /deeper than 4/],
    'long list': [400, 'TSHM_LIMIT_EXCEEDED', /9 items, at most 8/],
    'many keys': [400, 'TSHM_LIMIT_EXCEEDED', /9 keys, at most 8/],
    'too big': [413, 'TSHM_BODY_TOO_LARGE', /body/]
  }
  for (const [label, b64] of Object.entries(bodies)) {
    const r = await app.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/x-python-pickle' }, payload: Buffer.from(b64, 'base64') })
    const [status, code, message] = expected[label] ?? [0, '', /$^/]
    t.equal(r.statusCode, status, `${label}: ${r.body}`)
    t.match(r.json(), { code, message }, label)
  }
  const pwned = await python<boolean>('import json, os; print(json.dumps(os.path.exists("/tmp/tshm-pwned")))')
  t.equal(pwned, false, 'nothing was executed')
  const deepJson = '{"x":' + '['.repeat(100000) + ']'.repeat(100000) + '}'
  const r = await app.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/json' }, payload: deepJson })
  t.equal(r.statusCode, 413, 'a 200 kB JSON is over this body limit')
  const app2 = await build(t, { ...env, TENSORSHM_MAX_DEPTH: '4' })
  const deep = await app2.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/json' }, payload: deepJson })
  t.match(deep.json(), { statusCode: 400, code: 'TSHM_LIMIT_EXCEEDED' }, '100000 nested lists: a clean 400')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
})

t.test('releasing a segment while its decode streams: the answer completes with the data as it was', async (t) => {
  const app = await build(t, env)
  const { big } = await create(app, 'dec/release', { big: { shape: [48, 1024, 1024], dtype: 'uint8' } }) as { big: Descriptor }
  const want = await fill({ big })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await fetch(`${url}/v1/decode`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/x-npz' }, body: JSON.stringify({ big }) })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const chunks: Uint8Array[] = []
  const first = await reader.read()
  if (first.value !== undefined) chunks.push(first.value)
  const del = await fetch(`${url}/v1/segments/${big.name}`, { method: 'DELETE' })
  t.equal(del.status, 204, 'released mid-stream')
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
  }
  const loaded = await python<string>(`
import base64, hashlib, io, json, sys
import numpy as np
z = np.load(io.BytesIO(base64.b64decode(json.load(sys.stdin))))
print(json.dumps(hashlib.sha256(z['big'].tobytes()).hexdigest()))`, Buffer.concat(chunks).toString('base64'))
  t.equal(loaded, want.big)
})

checkNoLeftovers(t, prefix)
