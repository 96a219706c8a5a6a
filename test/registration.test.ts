import t from 'tap'
import { build, checkNoLeftovers, post, shmFiles, suitePrefix } from './helpers/build.js'
import { python } from './helpers/python.js'

const prefix = suitePrefix('regmap')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }
const PICKLE = 'application/x-python-pickle'

/**
 * A NOS client as NOS's own module behaves: `nos.common.shm.SharedMemoryNumpyObject` whose __setstate__ attaches
 * with SharedMemory and whose copy_from asserts tuple shapes. (It unregisters from the resource tracker so that this
 * test process does not unlink the service's segments on exit.) It loads the answer with plain `pickle.loads`,
 * writes a pattern through copy_from and reports what it saw.
 */
const NOS_CLIENT = `
import base64, json, pickle, sys, types
import numpy as np
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
for m in ('nos', 'nos.common', 'nos.common.shm'):
    sys.modules[m] = types.ModuleType(m)
sys.modules['nos'].common, sys.modules['nos.common'].shm = sys.modules['nos.common'], sys.modules['nos.common.shm']

class SharedMemoryNumpyObject:
    def __setstate__(self, state):
        self._shm = SharedMemory(name=state['name'], create=False)
        resource_tracker.unregister(self._shm._name, 'shared_memory')
        self.shape = state['shape']
        self.dtype = np.dtype(state['dtype'])
        self._arr = np.ndarray(self.shape, self.dtype, buffer=self._shm.buf)
    def copy_from(self, arr):
        assert arr.shape == self.shape, f'{arr.shape} != {self.shape}'
        assert arr.dtype == self.dtype
        self._arr[:] = arr[:]
    def close(self):
        del self._arr
        self._shm.close()
SharedMemoryNumpyObject.__module__ = 'nos.common.shm'
sys.modules['nos.common.shm'].SharedMemoryNumpyObject = SharedMemoryNumpyObject

shm_map = pickle.loads(base64.b64decode(json.load(sys.stdin)))
seen = {}
for key, value in shm_map.items():
    objs = value if isinstance(value, list) else [value]
    for i, o in enumerate(objs):
        o.copy_from(np.arange(np.prod(o.shape), dtype=o.dtype).reshape(o.shape) + i)
        seen.setdefault(key, []).append({'name': o._shm.name, 'shape': repr(o.shape), 'dtype': str(o.dtype)})
        o.close()
print(json.dumps({'list': isinstance(shm_map['images'], list), 'seen': seen}))
`

t.test('Accept: application/x-python-pickle answers NOS\'s registration map, which NOS\'s own loads attaches and writes through', async (t) => {
  const app = await build(t, env)
  for (const [i, accept] of [PICKLE, `${PICKLE}; protocol=2`, `${PICKLE};protocol=3`, `${PICKLE}; protocol="4"`, `${PICKLE}; q=0.9, text/html; q=0.1`].entries()) {
    const ns = `nos-client/obj-${i}`
    const res = await post(app, ns, { images: [{ shape: [2, 3, 3], dtype: 'uint8' }, { shape: [2, 3, 3], dtype: 'uint8' }], mask: { shape: [4], dtype: '<f4' } }, { headers: { accept } })
    t.equal(res.statusCode, 201, `${accept}: ${res.statusCode === 201 ? '' : res.body}`)
    t.equal(res.headers['content-type'], PICKLE)
    const protocol = /protocol="?(\d)/.exec(accept)?.[1] ?? '5'
    t.equal(res.rawPayload.subarray(0, 2).toString('hex'), `80${Number(protocol).toString(16).padStart(2, '0')}`, `${accept}: written at protocol ${protocol}`)
    const out = await python<{ list: boolean, seen: Record<string, Array<{ name: string, shape: string, dtype: string }>> }>(NOS_CLIENT, res.rawPayload.toString('base64'))
    t.ok(out.list, 'a list of specs comes back as a list of objects')
    t.same(out.seen.images?.map((o) => o.shape), ['(2, 3, 3)', '(2, 3, 3)'], 'shapes are tuples (NOS\'s copy_from assertion passes)')
    t.same(out.seen.mask?.map((o) => o.dtype), ['float32'])
    const listed = (await app.inject({ url: `/v1/segments?namespace=${ns}` })).json().segments as Array<{ name: string, key: string, index: number | null }>
    t.same(new Set(Object.values(out.seen).flat().map((o) => o.name)), new Set(listed.map((s) => s.name)), 'the objects name exactly the segments created')
    for (const s of listed) {
      const data = await app.inject({ url: `/v1/segments/${s.name}/data`, headers: { accept: 'application/octet-stream' } })
      const want = s.key === 'mask'
        ? Buffer.from(new Float32Array([0, 1, 2, 3]).buffer)
        : Buffer.from(Array.from({ length: 18 }, (_, j) => j + (s.index ?? 0)))
      t.same(data.rawPayload, want, `${s.key}[${String(s.index)}]: the service reads what NOS's copy_from wrote`)
    }
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/segments?namespace=${ns}` })).json().released, 3)
  }
})

t.test('JSON stays the default, and an Accept nothing matches is a 406 before anything is created', async (t) => {
  const app = await build(t, env)
  for (const accept of [undefined, '*/*', 'application/*', `application/json, ${PICKLE}; q=0.5`]) {
    const res = await post(app, 'json/x', { a: { shape: [1], dtype: 'uint8' } }, { headers: accept === undefined ? {} : { accept } })
    t.equal(res.statusCode, 201)
    t.match(res.headers['content-type'], /^application\/json/, `${String(accept)} gets JSON`)
    t.equal(res.json().segments.a.shape.length, 1)
    await app.inject({ method: 'DELETE', url: '/v1/segments?namespace=json' })
  }
  const before = shmFiles(prefix) // released segments the pool keeps for reuse stay; nothing may be added
  for (const accept of ['text/html', `${PICKLE}; protocol=1`, `${PICKLE}; protocol=6`, `${PICKLE}; protocol=x`]) {
    const res = await post(app, 'refused/x', { a: { shape: [1], dtype: 'uint8' } }, { headers: { accept } })
    t.equal(res.statusCode, 406, accept)
    t.equal(res.json().code, 'TSHM_NOT_ACCEPTABLE')
    t.match(res.json().message, /^Accept: /, 'the message names the header')
  }
  t.same((await app.inject({ url: '/v1/segments?namespace=refused' })).json().segments, [])
  t.same(shmFiles(prefix), before, 'nothing was created for a refused request')
})

checkNoLeftovers(t, prefix)
