import t from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { PyDict, PyTuple, ShmObject, parsePickle, type PyValue } from '../src/codecs/pickle.js'
import { PICKLE_PROTOCOLS, writePickle, type PickleProtocol } from '../src/codecs/pickle-writer.js'
import { python } from './helpers/python.js'
import { tag, type Tag } from './helpers/pytag.js'

// The stand-in nos.common.shm module and tag(), the JSON form values are compared in (test/fixtures/pickles).
const prelude = readFileSync(new URL('./fixtures/pickles/prelude.py', import.meta.url), 'utf8')

const unsafe = fc.oneof(fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + 1n, max: 2n ** 900n }), fc.bigInt({ min: -(2n ** 900n), max: BigInt(Number.MIN_SAFE_INTEGER) - 1n }))
const leaf = (bytes: boolean): fc.Arbitrary<PyValue> => fc.oneof(
  fc.constant(null), fc.boolean(), fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.double(), unsafe,
  fc.string({ unit: 'binary', maxLength: 300 }),
  ...(bytes ? [fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a))] : [])
)
const state = fc.record({ name: fc.string({ maxLength: 30 }), shape: fc.array(fc.nat(), { maxLength: 5 }), dtype: fc.constantFrom('uint8', 'float32', '>i2') })
  .map((s) => new ShmObject(new PyDict([['name', s.name], ['shape', new PyTuple(s.shape)], ['dtype', s.dtype]])))
const values = (bytes: boolean): fc.Arbitrary<PyValue> => fc.letrec<{ v: PyValue }>((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    leaf(bytes), state,
    fc.array(tie('v'), { maxLength: 6 }),
    fc.array(tie('v'), { maxLength: 6 }).map((items) => new PyTuple(items)),
    fc.array(fc.tuple(fc.string({ maxLength: 8 }), tie('v')), { maxLength: 6 }).map((e) => new PyDict(dedupe(e))))
})).v

/** Python keeps the last of equal keys at the first one's place; keep each key once so both sides agree. */
const dedupe = (entries: Array<[string, PyValue]>): Array<[PyValue, PyValue]> => [...new Map(entries)]

t.test('CPython loads what the writer writes, at every protocol, as the same values (C and pure-Python unpicklers)', async (t) => {
  for (const protocol of PICKLE_PROTOCOLS) {
    const samples = fc.sample(values(protocol >= 3), { numRuns: 150, seed: 12 + protocol })
    samples.push(new PyDict([['long', 'x'.repeat(70_000)], ['list', Array.from({ length: 2500 }, (_, i) => i - 1000)], ['big', 2n ** 64n], ['neg', -(2n ** 63n)], ['edges', [255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, -1, -(2 ** 31), -(2 ** 31) - 1, -0, 0.5]]]))
    const pickles = samples.map((v) => writePickle(v, protocol).toString('base64'))
    const loaded = await python<Array<[Tag, Tag]>>(`${prelude}
import io, pickletools
out = []
for b in json.load(sys.stdin):
    data = base64.b64decode(b)
    pickletools.dis(data, out=io.StringIO())  # a malformed opcode stream or frame raises here
    out.append([tag(pickle.loads(data)), tag(pickle._loads(data))])
print(json.dumps(out))`, pickles)
    const bad: string[] = []
    samples.forEach((v, i) => {
      const want = JSON.stringify(tag(v))
      const [c, pure] = loaded[i] ?? []
      const ours = JSON.stringify(tag(parsePickle(writePickle(v, protocol), { maxBytes: 1 << 22 })))
      for (const got of [JSON.stringify(c), JSON.stringify(pure), ours]) if (got !== want) bad.push(`${want.slice(0, 300)} came back as ${got.slice(0, 300)}`)
    })
    t.same(bad, [], `protocol ${protocol}: ${samples.length} values round-trip through CPython and through this service's reader`)
  }
})

t.test('NOS objects are written as NOS\'s own class would be: its global, NEWOBJ, then BUILD with the state', async (t) => {
  const obj = (name: string): ShmObject => new ShmObject(new PyDict([['name', name], ['shape', new PyTuple([480, 640, 3])], ['dtype', 'uint8']]))
  for (const protocol of PICKLE_PROTOCOLS) {
    const data = writePickle(new PyDict([['images', [obj('nos_psm_a'), obj('nos_psm_b')]], ['mask', obj('nos_psm_c')]]), protocol)
    const seen = await python<{ ops: string[], shape: unknown, cls: string }>(`${prelude}
import io, pickletools
data = base64.b64decode(sys.stdin.read().strip('"'))
ops = [op.name for op, arg, pos in pickletools.genops(data)]
d = pickle.loads(data)
print(json.dumps({'ops': ops, 'shape': repr(d['mask'].raw_state['shape']), 'cls': type(d['images'][1]).__module__ + '.' + type(d['images'][1]).__qualname__}))`, data.toString('base64'))
    t.equal(seen.cls, 'nos.common.shm.SharedMemoryNumpyObject', `protocol ${protocol}: the class path`)
    t.equal(seen.shape, '(480, 640, 3)', `protocol ${protocol}: shapes are tuples`)
    t.equal(seen.ops.filter((o) => o === 'NEWOBJ').length, 3)
    t.equal(seen.ops.filter((o) => o === 'BUILD').length, 3)
    t.ok(seen.ops.includes(protocol >= 4 ? 'STACK_GLOBAL' : 'GLOBAL'), `protocol ${protocol} names the class the way CPython does at that protocol`)
  }
})

t.test('refuses what it cannot write', async (t) => {
  t.throws(() => writePickle(Buffer.from('x'), 2), /protocol 3/)
  t.throws(() => writePickle(null, 1 as PickleProtocol), /2-5/)
  t.throws(() => writePickle(2n ** 3000n, 5), /255 bytes/)
})
