import t, { type Test } from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import {
  DEFAULT_PICKLE_LIMITS, PickleInvalid, PickleRefused, PyDict, PyTuple, ShmObject, looksLikePickle, parsePickle,
  type PickleLimits, type PyValue
} from '../src/codecs/pickle.js'
import { mutate, mutation } from './helpers/mutate.js'
import { python } from './helpers/python.js'
import { doubleHex, tag, type Tag } from './helpers/pytag.js'

// A stand-in nos.common.shm module, a restricted unpickler, and tag()/untag(): see the file.
const prelude = readFileSync(new URL('./fixtures/pickles/prelude.py', import.meta.url), 'utf8')
const py = async <T>(body: string, input: unknown = null): Promise<T> => await python<T>(`${prelude}\n${body}`, input)

/** Only the documented types, bigints only outside the safe range, and no container nested absurdly deep. */
function wellFormed (v: PyValue, depth = 0): boolean {
  if (depth > DEFAULT_PICKLE_LIMITS.maxDepth) return false
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string' || Buffer.isBuffer(v)) return true
  if (typeof v === 'bigint') return v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)
  if (Array.isArray(v)) return v.every((x) => wellFormed(x, depth + 1))
  if (v instanceof PyTuple) return v.items.every((x) => wellFormed(x, depth + 1))
  if (v instanceof PyDict) return v.entries.every(([k, x]) => wellFormed(k, depth + 1) && wellFormed(x, depth + 1))
  if (v instanceof ShmObject) return wellFormed(v.state, depth + 1)
  return false
}

type Outcome = 'ok' | 'refused' | 'invalid'

/** Parses, and rethrows anything that is not one of the two documented errors (so fast-check reports it). */
function outcome (data: Uint8Array, limits?: Partial<PickleLimits>): Outcome {
  let value: PyValue
  try {
    value = parsePickle(data, limits)
  } catch (e) {
    if (!(e instanceof PickleRefused) && !(e instanceof PickleInvalid)) throw e
    if (!e.message.startsWith('pickle: ') || !/ at byte \d+/.test(e.message)) throw new Error(`bad message: ${e.message}`)
    return e instanceof PickleRefused ? 'refused' : 'invalid'
  }
  if (!wellFormed(value)) throw new Error('parsePickle returned something outside PyValue')
  return 'ok'
}

function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    return e
  }
  return undefined
}

function get (d: PyValue, key: string): PyValue {
  if (!(d instanceof PyDict)) throw new Error('not a dict')
  const entry = d.entries.find(([k]) => k === key)
  if (entry === undefined) throw new Error(`no key ${key}`)
  return entry[1]
}

// --- building pickles by hand: numbers are single bytes, strings are latin-1 (opcodes like ']' or 'os\nsystem\n')

type Part = number | string | Uint8Array
const b = (...parts: Part[]): Buffer =>
  Buffer.concat(parts.map((p) => typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(p, 'latin1') : p))
const u16 = (n: number): Buffer => { const x = Buffer.alloc(2); x.writeUInt16LE(n); return x }
const u32 = (n: number): Buffer => { const x = Buffer.alloc(4); x.writeUInt32LE(n); return x }
const i32 = (n: number): Buffer => { const x = Buffer.alloc(4); x.writeInt32LE(n); return x }
const u64 = (n: bigint): Buffer => { const x = Buffer.alloc(8); x.writeBigUInt64LE(n); return x }
const f64 = (n: number): Buffer => { const x = Buffer.alloc(8); x.writeDoubleBE(n); return x }
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8')
/** SHORT_BINUNICODE */
const sbu = (s: string): Buffer => {
  if (utf8(s).length > 255) throw new Error('too long for SHORT_BINUNICODE')
  return b(0x8c, utf8(s).length, utf8(s))
}
/** BINUNICODE */
const bu = (s: string): Buffer => b('X', u32(utf8(s).length), utf8(s))
/** GLOBAL */
const glob = (module: string, name: string): Buffer => b('c', utf8(`${module}\n${name}\n`))
/** STACK_GLOBAL */
const sglob = (module: string, name: string): Buffer => b(sbu(module), sbu(name), 0x93)
const SHM = glob('nos.common.shm', 'SharedMemoryNumpyObject')
const P2 = b(0x80, 2)
const P3 = b(0x80, 3)
const P4 = b(0x80, 4)
const P5 = b(0x80, 5)
const NEWOBJ = 0x81
const TUPLE1 = 0x85
const TUPLE2 = 0x86
const MEMOIZE = 0x94

// --- what real Python writes

interface Generated {
  cases: { [name: string]: Array<[string, Tag]> }
  /** Every opcode the cases use, as pickletools names them. */
  opcodes: string[]
}

const generated = py<Generated>(String.raw`
import pickletools
shm = SharedMemoryNumpyObject
img = shm('nos_psm_0123456789abcdef', (1, 480, 640, 3), 'uint8')
shared_list = [1, 'two']
strs = [str(i) for i in range(300)]
cases = {
    'descriptor': {'images': img, 'prompt': 'a cat'},
    'list of objects': {'images': [shm('nos_psm_a', (2,), 'float32'), shm('nos_psm_b', (), '>i2')], 'n': 2},
    'bare object': img,
    'passthrough': {
        's': 'héllo ✓ 🐱', 'bom': '\ufeffx', 'unicode': '\x00\U0010ffff', 'long str': 'x' * 300,
        'i': 7, 'neg': -7, 'i32': -2**31, 'u32': 2**31, 'big': 10**40, 'negbig': -(10**40),
        'edges': [2**53 - 1, 2**53, -(2**53 - 1), -(2**53), 2**63, -2**63, 2**64, 255, 256, 65535, 65536, -1, -256, 2**2100, -(2**2100)],
        'f': 1.5, 'specials': [float('inf'), float('-inf'), float('nan'), -0.0, 0.0, 1e300, 5e-324, 1.0],
        't': True, 'f0': False, 'none': None,
        'bytes': bytes(range(256)), 'empty bytes': b'', 'long bytes': b'y' * 300,
        'bytearray': bytearray(b'\x00\xfe'), 'empty bytearray': bytearray(),
        'nested': [[1, [2, (3, {'k': (4,)})]], (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        'keys': {1: 'int', 2.5: 'float', None: 'none', (1, 'a'): 'tuple', b'k': 'bytes', False: 'bool', 10**30: 'big'},
        'empty containers': [[], {}, ()], 'one item': [[None], {'k': None}],
    },
    'shared': {'a': shared_list, 'b': shared_list, 'c': img, 'd': [img, img]},
    'many memo entries': strs + strs,
    'long batches': list(range(2500)),
    'large': {'str': 'z' * 70000, 'bytes': b'w' * 70000},
}
out = {}
opcodes = set()
for name, value in cases.items():
    out[name] = []
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps(value, protocol=protocol)
        out[name].append([b64(data), tag(restricted_loads(data))])
        opcodes |= {op.name for op, arg, pos in pickletools.genops(data)}
print(json.dumps({'cases': out, 'opcodes': sorted(opcodes)}))
`)
const realPickles = generated.then((g) => g.cases)

t.test('reads what Python pickles at protocols 2 to 5 into the documented values', async (t) => {
  const cases = await realPickles
  t.equal(Object.keys(cases).length, 8)
  const { opcodes } = await generated
  const expected = ['APPEND', 'APPENDS', 'BINBYTES', 'BINFLOAT', 'BINGET', 'BININT', 'BININT1', 'BININT2', 'BINPUT', 'BINUNICODE', 'BUILD',
    'BYTEARRAY8', 'EMPTY_DICT', 'EMPTY_LIST', 'EMPTY_TUPLE', 'FRAME', 'GLOBAL', 'LONG1', 'LONG4', 'LONG_BINGET', 'LONG_BINPUT', 'MARK',
    'MEMOIZE', 'NEWFALSE', 'NEWOBJ', 'NEWTRUE', 'NONE', 'PROTO', 'REDUCE', 'SETITEM', 'SETITEMS', 'SHORT_BINBYTES', 'SHORT_BINUNICODE',
    'STACK_GLOBAL', 'STOP', 'TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3']
  t.strictSame(opcodes, expected, 'the cases exercise every opcode Python writes for these types')
  for (const [name, perProtocol] of Object.entries(cases)) {
    for (const [i, [data, expected]] of perProtocol.entries()) {
      t.strictSame(tag(parsePickle(Buffer.from(data, 'base64'))), expected, `${name}, protocol ${i + 2}`)
    }
  }
})

t.test('the NOS descriptor comes out as a PyDict holding a ShmObject with its raw state', async (t) => {
  const cases = await realPickles
  for (const [data] of cases.descriptor ?? []) {
    const result = parsePickle(Buffer.from(data, 'base64'))
    t.type(result, PyDict)
    const images = get(result, 'images')
    t.type(images, ShmObject)
    const state = (images as ShmObject).state
    t.equal(get(state, 'name'), 'nos_psm_0123456789abcdef')
    t.strictSame(get(state, 'shape'), new PyTuple([1, 480, 640, 3]))
    t.equal(get(state, 'dtype'), 'uint8')
    t.equal(get(result, 'prompt'), 'a cat')
  }
})

t.test('a value pickled once and referenced twice comes back as one shared JS object', async (t) => {
  const cases = await realPickles
  t.equal(cases.shared?.length, 4)
  for (const [data] of cases.shared ?? []) {
    const result = parsePickle(Buffer.from(data, 'base64'))
    t.equal(get(result, 'a'), get(result, 'b'))
    const d = get(result, 'd') as PyValue[]
    t.equal(d[0], get(result, 'c'))
    t.equal(d[1], get(result, 'c'))
  }
})

t.test('bytes come back as copies, not views of the input', async (t) => {
  const input = new Uint8Array(b(P3, 'C', 3, 'abc', '.')) // its own ArrayBuffer, not Node's shared pool
  const result = parsePickle(input)
  t.ok(Buffer.isBuffer(result))
  input[3] = 0x7a
  t.equal((result as Buffer).toString(), 'abc')
  t.not((result as Buffer).buffer, input.buffer)
})

t.test('the per-key form: a dict of pickles, each found by looksLikePickle and parsed on its own', async (t) => {
  const perKey = await py<Array<[string, Record<string, Tag>]>>(String.raw`
img = SharedMemoryNumpyObject('nos_psm_0123456789abcdef', (2, 3), 'float32')
values = {'images': img, 'prompt': 'a cat', 'n': 3, 'raw': b'not a pickle', 'many': [img, img], 'none': None}
out = []
for protocol in (2, 3, 4, 5):
    outer = pickle.dumps({k: pickle.dumps(v, protocol=protocol) for k, v in values.items()}, protocol=protocol)
    out.append([b64(outer), {k: tag(v) for k, v in values.items()}])
print(json.dumps(out))
`)
  t.equal(perKey.length, 4)
  for (const [i, [data, expected]] of perKey.entries()) {
    const outer = parsePickle(Buffer.from(data, 'base64'))
    t.type(outer, PyDict)
    const inner: Record<string, Tag> = {}
    for (const [key, value] of (outer as PyDict).entries) {
      t.ok(Buffer.isBuffer(value) && looksLikePickle(value), `protocol ${i + 2}: ${String(key)} looks like a pickle`)
      inner[key as string] = tag(parsePickle(value as Buffer))
    }
    t.strictSame(inner, expected, `protocol ${i + 2}`)
  }
})

t.test('looksLikePickle wants PROTO 2-5 first and STOP last', async (t) => {
  t.ok(looksLikePickle(b(P2, 'N', '.')))
  t.ok(looksLikePickle(b(P5, 'N', '.')))
  t.ok(looksLikePickle(b(P2, '.')))
  for (const data of [b(), b('not a pickle'), b('{"json": true}'), b(0x80, 1, 'N', '.'), b(0x80, 6, 'N', '.'), b(P4, 'N'), b(P5), b('N', '.'), b(0x80, 0x2e)]) {
    t.notOk(looksLikePickle(data), data.toString('hex'))
  }
})

// --- refusals

function assertRefused (t: Test, data: Uint8Array, global: string | RegExp, name: string): void {
  const e = thrown(() => parsePickle(data))
  t.type(e, PickleRefused, name)
  if (!(e instanceof PickleRefused)) return
  if (typeof global === 'string') t.equal(e.global, global, name)
  else t.match(e.global, global, name)
  t.ok(e.message.startsWith(`pickle: refused global "${e.global}"`), `${name}: ${e.message}`)
}

t.test('refuses every global but the allowed ones, naming it', async (t) => {
  const hostile: Array<[string, Buffer, string]> = [
    ['os.system via REDUCE', b(P2, glob('os', 'system'), bu('echo hi'), TUPLE1, 'R', '.'), 'os.system'],
    ['eval via STACK_GLOBAL', b(P4, sglob('builtins', 'eval'), sbu('1+1'), TUPLE1, 'R', '.'), 'builtins.eval'],
    ['posix.system', b(P2, glob('posix', 'system'), bu('id'), TUPLE1, 'R', '.'), 'posix.system'],
    ['subprocess.Popen', b(P3, glob('subprocess', 'Popen'), bu('id'), TUPLE1, 'R', '.'), 'subprocess.Popen'],
    ['builtins.getattr', b(P4, sglob('builtins', 'getattr'), '.'), 'builtins.getattr'],
    ['copyreg._reconstructor', b(P2, glob('copyreg', '_reconstructor'), '.'), 'copyreg._reconstructor'],
    ['another class of nos.common.shm', b(P2, glob('nos.common.shm', 'SomethingElse'), ')', NEWOBJ, '.'), 'nos.common.shm.SomethingElse'],
    ['the allowed class named with the dot elsewhere', b(P4, sglob('nos.common', 'shm.SharedMemoryNumpyObject'), ')', NEWOBJ, '}', 'b', '.'), 'nos.common.shm.SharedMemoryNumpyObject'],
    ['__builtin__.eval', b(P2, glob('__builtin__', 'eval'), bu('1'), TUPLE1, 'R', '.'), '__builtin__.eval'],
    ['another function of _codecs', b(P2, glob('_codecs', 'decode'), '.'), '_codecs.decode'],
    ['INST', b(P2, '(', bu('id'), 'i', 'os\nsystem\n', '.'), 'os.system'],
    ['OBJ on the allowed class', b(P2, '(', SHM, 'o', '.'), 'nos.common.shm.SharedMemoryNumpyObject'],
    ['REDUCE on the allowed class', b(P2, SHM, ')', 'R', '.'), 'nos.common.shm.SharedMemoryNumpyObject'],
    ['NEWOBJ on bytes', b(P2, glob('builtins', 'bytes'), ')', NEWOBJ, '.'), 'builtins.bytes'],
    ['NEWOBJ_EX on bytearray', b(P4, sglob('builtins', 'bytearray'), ')', '}', 0x92, '.'), 'builtins.bytearray'],
    ['EXT1', b(P2, 0x82, 1, '.'), 'copyreg extension 1'],
    ['EXT2', b(P2, 0x83, u16(258), '.'), 'copyreg extension 258'],
    ['EXT4', b(P2, 0x84, i32(70000), '.'), 'copyreg extension 70000'],
    ['PERSID', b(P2, 'P', 'x\n', '.'), 'persistent_load'],
    ['BINPERSID', b(P2, sbu('x'), 'Q', '.'), 'persistent_load'],
    ['EMPTY_SET', b(P4, 0x8f, '.'), 'builtins.set'],
    ['FROZENSET', b(P4, '(', 0x91, '.'), 'builtins.frozenset'],
    ['an allowed function as a dict value', b(P2, '}', sbu('k'), glob('_codecs', 'encode'), 's', '.'), '_codecs.encode'],
    ['an allowed class as the result', b(P4, sglob('builtins', 'bytearray'), '.'), 'builtins.bytearray'],
    ['an allowed class as BUILD state', b(P2, SHM, ')', NEWOBJ, SHM, 'b', '.'), 'nos.common.shm.SharedMemoryNumpyObject']
  ]
  for (const [name, data, global] of hostile) assertRefused(t, data, global, name)
  const long = `m${'o'.repeat(300)}dule`
  const e = thrown(() => parsePickle(b(P4, bu(long), sbu('f'), 0x93, '.')))
  t.equal((e as PickleRefused).global, `${long}.f`, 'the full name is kept')
  t.match((e as PickleRefused).message, /^pickle: refused global "mo{199}\.\.\." at byte 315$/, 'the message clips it')
})

t.test('refuses what Python writes for other types, at every protocol', async (t) => {
  const real = await py<Array<[string, number, string]>>(String.raw`
import collections, datetime, os
import numpy as np
cases = {'set': {1, 2}, 'frozenset': frozenset([1]), 'OrderedDict': collections.OrderedDict(a=1), 'ndarray': np.zeros(3),
         'os.system': os.system, 'bytes type': bytes, 'date': datetime.date(2020, 1, 1), 'complex': 1j, 'range': range(3),
         'nested Counter': {'ok': 1, 'bad': [collections.Counter()]}, 'plain object': types.SimpleNamespace(a=1)}
print(json.dumps([[name, p, b64(pickle.dumps(v, protocol=p))] for name, v in cases.items() for p in (2, 3, 4, 5)]))
`)
  const expected: Record<string, RegExp> = {
    set: /^(__builtin__|builtins)\.set$/,
    frozenset: /^(__builtin__|builtins)\.frozenset$/,
    OrderedDict: /^collections\.OrderedDict$/,
    ndarray: /^numpy\./,
    'os.system': /^posix\.system$/,
    'bytes type': /^(__builtin__|builtins)\.bytes$/,
    date: /^datetime\.date$/,
    complex: /^(__builtin__|builtins)\.complex$/,
    range: /^(__builtin__\.xrange|builtins\.range)$/,
    'nested Counter': /^collections\.Counter$/,
    'plain object': /^types\.SimpleNamespace$/
  }
  t.equal(real.length, Object.keys(expected).length * 4)
  for (const [name, protocol, data] of real) {
    assertRefused(t, Buffer.from(data, 'base64'), expected[name] ?? /^$/, `${name}, protocol ${protocol}`)
  }
})

// --- malformed input

t.test('rejects malformed pickles as PickleInvalid, saying what and where', async (t) => {
  const invalid: Array<[string, Buffer, RegExp]> = [
    ['empty input', b(), /^pickle: truncated: no STOP after 0 bytes at byte 0$/],
    ['garbage', b('hello, world'), /memo index 101 was never stored at byte 0/],
    ['JSON', b('{"json": true}'), /unknown opcode 0x7b at byte 0/],
    ['trailing bytes after STOP', b(P2, 'N', '.', 'N'), /1 trailing bytes after STOP at byte 4/],
    ['bad memo index', b(P2, 'N', 'h', 3, '.'), /memo index 3 was never stored at byte 3/],
    ['bad long memo index', b(P2, 'j', u32(0xffffffff), '.'), /memo index 4294967295 was never stored/],
    ['APPEND on an empty stack', b(P2, 'N', 'a', '.'), /stack underflow at byte 3/],
    ['TUPLE2 of one value', b(P2, 'N', TUPLE2, '.'), /stack underflow/],
    ['APPEND to a list below the MARK', b(P2, ']', '(', 'N', 'a', '.'), /stack underflow/],
    ['STOP on an empty stack', b(P2, '.'), /stack underflow at byte 2/],
    ['MARK never closed', b(P2, '(', 'N', '.'), /STOP leaves values or marks on the stack/],
    ['two values at STOP', b(P2, 'N', 'N', '.'), /STOP leaves values or marks on the stack/],
    ['APPENDS without MARK', b(P2, ']', 'N', 'e', '.'), /no MARK to pop to/],
    ['SETITEMS with a key and no value', b(P2, '}', '(', 'N', 'u', '.'), /key and no value/],
    ['APPEND to a dict', b(P2, '}', 'N', 'a', '.'), /not a list/],
    ['SETITEM on a list', b(P2, ']', 'N', 'N', 's', '.'), /not a dict/],
    ['unknown opcode', b(P2, 0xff, '.'), /unknown opcode 0xff at byte 2/],
    ['protocol 0 INT', b('I1\n.'), /unsupported opcode INT/],
    ['protocol 0 STRING', b("S'a'\n."), /unsupported opcode STRING/],
    ['protocol 0 PUT', b(P2, 'N', 'p0\n', '.'), /unsupported opcode PUT/],
    ['Python 2 SHORT_BINSTRING', b(P2, 'U', 1, 'a', '.'), /unsupported opcode SHORT_BINSTRING/],
    ['out-of-band NEXT_BUFFER', b(P5, 0x97, '.'), /unsupported opcode NEXT_BUFFER/],
    ['PROTO 6', b(0x80, 6, 'N', '.'), /unsupported protocol 6 at byte 0/],
    ['PROTO 6 later on', b(P2, 'N', 0x80, 6, '.'), /unsupported protocol 6 at byte 3/],
    ['BINBYTES8 of 2^60 bytes', b(P4, 0x8e, u64(2n ** 60n), '.'), /truncated: a length of 1152921504606846976 bytes/],
    ['BINUNICODE8 of 2^64-1 bytes', b(P4, 0x8d, u64(2n ** 64n - 1n), '.'), /truncated: a length of 18446744073709551615 bytes/],
    ['BYTEARRAY8 of 2^62 bytes', b(P5, 0x96, u64(2n ** 62n), '.'), /truncated: a length/],
    ['FRAME of 2^40 bytes', b(P4, 0x95, u64(2n ** 40n), 'N', '.'), /truncated: a length/],
    ['BINBYTES of 4 GiB', b(P3, 'B', u32(0xffffffff), '.'), /truncated: BINBYTES wants 4294967295 bytes, 1 left/],
    ['BINUNICODE of 2 GiB', b(P2, 'X', u32(0x80000000), 'abc.'), /truncated: BINUNICODE wants 2147483648 bytes/],
    ['LONG4 of a negative length', b(P2, 0x8b, i32(-1), '.'), /negative length -1/],
    ['LONG4 of 2 GiB', b(P2, 0x8b, i32(0x7fffffff), '.'), /truncated: LONG4 wants/],
    ['invalid UTF-8', b(P4, 0x8c, 2, 0xc3, 0x28, '.'), /invalid UTF-8 in a str at byte 2/],
    ['overlong UTF-8', b(P4, 0x8c, 2, 0xc0, 0xaf, '.'), /invalid UTF-8/],
    ['an encoded surrogate', b(P4, 0x8c, 3, 0xed, 0xa0, 0x80, '.'), /invalid UTF-8/],
    ['a GLOBAL name in invalid UTF-8', b(P2, 'c', 0xff, '\nx\n', '.'), /invalid UTF-8/],
    ['GLOBAL without its newline', b(P2, 'cos'), /truncated: no newline/],
    ['a FRAME inside a FRAME', b(P4, 0x95, u64(10n), 0x95, u64(1n), 'N', '.'), /a FRAME starts inside another at byte 11/],
    ['an opcode past the end of its FRAME', b(P4, 0x95, u64(3n), 0x8c, 3, 'abc', '.'), /an opcode runs past the end of its FRAME at byte 11/],
    ['a GLOBAL name past the end of its FRAME', b(P4, 0x95, u64(3n), 'cos\nsystem\n', '.'), /past the end of its FRAME/],
    ['a list as a dict key', b(P2, '}', ']', 'N', 's', '.'), /unhashable dict key \(list\)/],
    ['a dict as a dict key', b(P2, '}', '}', 'N', 's', '.'), /unhashable dict key \(dict\)/],
    ['a bytearray as a dict key', b(P5, '}', 0x96, u64(1n), 'a', 'N', 's', '.'), /unhashable dict key \(bytearray\)/],
    ['a tuple holding a list as a dict key', b(P2, '}', ']', TUPLE1, 'N', 's', '.'), /unhashable dict key \(tuple holding/],
    ['a SharedMemoryNumpyObject as a dict key', b(P2, '}', SHM, ')', NEWOBJ, '}', 'b', 'N', 's', '.'), /unhashable dict key \(SharedMemoryNumpyObject\)/],
    ['STACK_GLOBAL of two None', b(P4, 'N', 'N', 0x93, '.'), /STACK_GLOBAL needs two str/],
    ['REDUCE of a str', b(P4, sbu('os'), ')', 'R', '.'), /REDUCE of something that is not a global/],
    ['REDUCE with a list for arguments', b(P2, glob('_codecs', 'encode'), ']', 'R', '.'), /arguments that are not a tuple/],
    ['_codecs.encode to utf-8', b(P2, glob('_codecs', 'encode'), bu('x'), bu('utf-8'), TUPLE2, 'R', '.'), /_codecs\.encode called with arguments a pickler never writes/],
    ['_codecs.encode of one argument', b(P2, glob('_codecs', 'encode'), bu('x'), TUPLE1, 'R', '.'), /never writes/],
    ['_codecs.encode beyond latin-1', b(P2, glob('_codecs', 'encode'), bu('€'), bu('latin1'), TUPLE2, 'R', '.'), /not latin-1/],
    ['bytes(3)', b(P2, glob('__builtin__', 'bytes'), 'K', 3, TUPLE1, 'R', '.'), /__builtin__\.bytes called with arguments/],
    ['bytearray(3)', b(P3, glob('builtins', 'bytearray'), 'K', 3, TUPLE1, 'R', '.'), /builtins\.bytearray called with arguments/],
    ['NEWOBJ with arguments', b(P2, SHM, 'K', 1, TUPLE1, NEWOBJ, '}', 'b', '.'), /with arguments \(its state comes from BUILD\)/],
    ['NEWOBJ_EX with keyword arguments', b(P4, SHM, ')', '}', sbu('name'), 'N', 's', 0x92, '}', 'b', '.'), /with arguments/],
    ['NEWOBJ of a str', b(P4, sbu('x'), ')', NEWOBJ, '.'), /NEWOBJ of something that is not a class/],
    ['BUILD on a dict', b(P2, '}', '}', 'b', '.'), /BUILD on something that is not a new SharedMemoryNumpyObject/],
    ['BUILD twice', b(P2, SHM, ')', NEWOBJ, '}', 'b', '}', 'b', '.'), /BUILD on something that is not a new/],
    ['an object never built', b(P2, SHM, ')', NEWOBJ, '.'), /never got its state/],
    ['OBJ without a class', b(P2, '(', 'N', 'o', '.'), /OBJ without a class/]
  ]
  for (const [name, data, message] of invalid) {
    const e = thrown(() => parsePickle(data))
    t.type(e, PickleInvalid, name)
    t.match((e as Error).message, message, name)
  }
})

t.test('every proper prefix of a real pickle is PickleInvalid, and says truncated', async (t) => {
  const cases = await realPickles
  const small = Object.values(cases).flat().map(([data]) => Buffer.from(data, 'base64')).filter((d) => d.length < 4000)
  t.ok(small.length >= 20)
  const wrong: string[] = []
  for (const data of small) {
    for (let n = 0; n < data.length; n++) {
      const e = thrown(() => parsePickle(data.subarray(0, n)))
      if (!(e instanceof PickleInvalid) || !e.message.includes('truncated')) wrong.push(`${data.subarray(0, 12).toString('hex')}… cut at ${n}: ${String(e)}`)
    }
  }
  t.strictSame(wrong, [])
})

t.test('a str Python wrote with surrogatepass is invalid UTF-8', async (t) => {
  const data = await py<string[]>(String.raw`print(json.dumps([b64(pickle.dumps('a\ud800b', protocol=p)) for p in (2, 3, 4, 5)]))`)
  for (const d of data) t.throws(() => parsePickle(Buffer.from(d, 'base64')), { name: 'PickleInvalid', message: /invalid UTF-8/ })
})

// --- limits

function nestedLists (depth: number): Buffer {
  return b(P2, ']'.repeat(depth), 'a'.repeat(depth - 1), '.')
}

t.test('nesting beyond maxDepth is PickleInvalid, never a stack overflow', async (t) => {
  t.throws(() => parsePickle(nestedLists(10_000)), { name: 'PickleInvalid', message: /nested deeper than 32 \(maxDepth\)/ })
  t.throws(() => parsePickle(b(P2, 'N', Buffer.alloc(50_000, TUPLE1), '.')), { name: 'PickleInvalid', message: /maxDepth/ })
  t.ok(Array.isArray(parsePickle(nestedLists(32))), 'exactly 32 levels is fine')
  // x = [[[]]] memoized, then [x, [[x]]]: the second reference puts x's three levels below depth 3.
  const sharedDeep = b(P2, ']]]aa', 'q', 0, '0', ']', 'h', 0, 'a', ']]', 'h', 0, 'aaa', '.')
  t.ok(Array.isArray(parsePickle(sharedDeep, { maxDepth: 6 })))
  t.throws(() => parsePickle(sharedDeep, { maxDepth: 5 }), { message: /nested deeper than 5/ }, 'depth counts every path to a shared container')
  t.throws(() => parsePickle(nestedLists(33)), { message: /maxDepth/ })
  t.ok(Array.isArray(parsePickle(nestedLists(5), { maxDepth: 5 })))
  t.throws(() => parsePickle(nestedLists(6), { maxDepth: 5 }), { message: /nested deeper than 5 \(maxDepth\)/ })
  // The descriptor itself is dict > list > object > state dict > shape tuple: five levels.
  const cases = await realPickles
  const listOfObjects = Buffer.from(cases['list of objects']?.[0]?.[0] ?? '', 'base64')
  t.ok(parsePickle(listOfObjects, { maxDepth: 5 }) instanceof PyDict)
  t.throws(() => parsePickle(listOfObjects, { maxDepth: 4 }), { message: /maxDepth/ })
})

t.test('maxItems bounds the values created, and the values met walking shared references', async (t) => {
  t.throws(() => parsePickle(b(P2, ']', '(', 'N'.repeat(100_001), 'e', '.')), { name: 'PickleInvalid', message: /more than 100000 values \(maxItems\)/ })
  t.strictSame(parsePickle(b(P2, ']', '(', 'N'.repeat(9), 'e', '.'), { maxItems: 10 }), Array(9).fill(null))
  t.throws(() => parsePickle(b(P2, ']', '(', 'N'.repeat(10), 'e', '.'), { maxItems: 10 }), { message: /maxItems/ })
  // 31 lists, each holding the previous one twice: 32 values made, 2^31 met by a naive walk.
  let laughs = b(P2, ']', 'N', 'a', 'q', 0, '0')
  for (let i = 1; i <= 30; i++) laughs = b(laughs, ']', 'h', i - 1, 'a', 'h', i - 1, 'a', 'q', i, '0')
  laughs = b(laughs, 'h', 30, '.')
  t.throws(() => parsePickle(laughs), { name: 'PickleInvalid', message: /once shared references are expanded \(maxItems\)/ })
})

t.test('maxMemo, maxBytes, and the bytes _codecs.encode may produce', async (t) => {
  t.throws(() => parsePickle(b(P4, 'N', Buffer.alloc(4, MEMOIZE), '.'), { maxMemo: 3 }), { name: 'PickleInvalid', message: /memo index 3 is beyond the 3 entries allowed \(maxMemo\)/ })
  t.equal(parsePickle(b(P4, 'N', Buffer.alloc(3, MEMOIZE), '.'), { maxMemo: 3 }), null)
  t.equal(parsePickle(b(P2, 'N', 'r', u32(99_999), '0', 'j', u32(99_999), '.')), null, 'a sparse memo index is fine below maxMemo')
  t.throws(() => parsePickle(b(P2, 'N', 'r', u32(0xffffffff), '.')), { message: /memo index 4294967295 is beyond/ })
  t.throws(() => parsePickle(Buffer.alloc(100, 'N'), { maxBytes: 50 }), { name: 'PickleInvalid', message: /100 bytes is over the limit of 50 \(maxBytes\)/ })
  t.throws(() => parsePickle(Buffer.alloc(DEFAULT_PICKLE_LIMITS.maxBytes + 1)), { message: /maxBytes/ })
  // One 100 kB str, encoded twenty times through memo references.
  let encodes = b(P2, glob('_codecs', 'encode'), 'q', 0, bu('y'.repeat(100_000)), bu('latin1'), TUPLE2, 'q', 1, '0', '0', ']')
  for (let i = 0; i < 20; i++) encodes = b(encodes, 'h', 0, 'h', 1, 'R', 'a')
  encodes = b(encodes, '.')
  t.throws(() => parsePickle(encodes), { name: 'PickleInvalid', message: /_codecs\.encode produced more than 1048576 bytes \(maxBytes\)/ })
  t.equal((parsePickle(encodes, { maxBytes: 4_000_000 }) as Buffer[]).length, 20)
})

t.test('a shared budget makes maxItems and maxBytes bound several parses together', async (t) => {
  const nines = b(P2, ']', '(', 'N'.repeat(9), 'e', '.')
  const budget = { items: 0, bytes: 0 }
  t.strictSame(parsePickle(nines, { maxItems: 25, budget }), Array(9).fill(null))
  t.strictSame(budget, { items: 10, bytes: nines.length }, 'a list and its 9 values, and the input read')
  t.strictSame(parsePickle(nines, { maxItems: 25, budget }), Array(9).fill(null))
  t.throws(() => parsePickle(nines, { maxItems: 25, budget }), { name: 'PickleInvalid', message: /^pickle: more than 25 values with the pickles read before it \(maxItems\) at byte \d+$/ })
  // 5 values made, 23 met once the shared references are expanded: the budget is charged the larger.
  let shared = b(P2, ']', 'N', 'a', 'q', 0, '0')
  for (let i = 1; i <= 3; i++) shared = b(shared, ']', 'h', i - 1, 'a', 'h', i - 1, 'a', 'q', i, '0')
  shared = b(shared, 'h', 3, '.')
  const expanded = { items: 0, bytes: 0 }
  parsePickle(shared, { budget: expanded })
  t.equal(expanded.items, 1 + 2 * (1 + 2 * (1 + 2 * (1 + 1))))
  t.throws(() => parsePickle(shared, { maxItems: 40, budget: expanded }), { message: /once shared references are expanded \(maxItems\)/ })
  const bytes = { items: 0, bytes: 0 }
  parsePickle(nines, { maxBytes: 2 * nines.length, budget: bytes })
  parsePickle(nines, { maxBytes: 2 * nines.length, budget: bytes })
  t.throws(() => parsePickle(nines, { maxBytes: 2 * nines.length, budget: bytes }), { message: /^pickle: \d+ bytes is over the limit of \d+ with the pickles read before it \(maxBytes\) at byte 0$/ })
  t.strictSame(parsePickle(nines, { maxItems: 10 }), Array(9).fill(null), 'without a budget, each parse has the whole allowance')
})

t.test('a memoized bytearray argument reused many times is not copied each time', async (t) => {
  let data = b(P3, glob('builtins', 'bytearray'), 'q', 0, 'B', u32(100_000), Buffer.alloc(100_000, 7), TUPLE1, 'q', 1, '0', '0', ']', '(')
  data = b(data, Buffer.alloc(5000 * 5, b('h', 0, 'h', 1, 'R')), 'e', '.')
  const before = process.memoryUsage().arrayBuffers
  const result = parsePickle(data) as Buffer[]
  t.equal(result.length, 5000)
  t.equal(result[4999]?.length, 100_000)
  t.ok(process.memoryUsage().arrayBuffers - before < 100e6, 'far less than the 500 MB copies would take')
})

t.test('limits must be sane integers', async (t) => {
  t.throws(() => parsePickle(b(P2, 'N', '.'), { maxDepth: 1e6 }), RangeError)
  t.throws(() => parsePickle(b(P2, 'N', '.'), { maxItems: -1 }), RangeError)
  t.throws(() => parsePickle(b(P2, 'N', '.'), { maxBytes: 1.5 }), RangeError)
  t.equal(parsePickle(b(P2, 'N', '.'), { maxDepth: undefined }), null)
  t.strictSame(DEFAULT_PICKLE_LIMITS, { maxBytes: 1048576, maxDepth: 32, maxItems: 100000, maxMemo: 100000 })
})

// --- memo cycles

t.test('a container that contains itself is PickleInvalid', async (t) => {
  t.throws(() => parsePickle(b(P2, ']', 'q', 0, 'h', 0, 'a', '.')), { name: 'PickleInvalid', message: /a container contains itself/ })
  t.throws(() => parsePickle(b(P2, '}', 'q', 0, sbu('me'), 'h', 0, 's', '.')), { message: /contains itself/ })
  t.throws(() => parsePickle(b(P2, SHM, ')', NEWOBJ, 'q', 0, ']', 'h', 0, 'a', 'b', '.')), { message: /contains itself/ }, 'an object whose state holds it')
  const real = await py<string[]>(String.raw`
l = []
l.append(l)
d = {}
d['d'] = [d]
r = []
tup = (r,)
r.append(tup)
print(json.dumps([b64(pickle.dumps(v, protocol=p)) for v in (l, d, tup) for p in (2, 3, 4, 5)]))
`)
  t.equal(real.length, 12)
  for (const data of real) t.throws(() => parsePickle(Buffer.from(data, 'base64')), { name: 'PickleInvalid', message: /contains itself/ })
})

// --- the opcodes Python never writes for these types but which are legal

t.test('DUP, POP, POP_MARK, LIST, DICT, NEWOBJ_EX and PROTO anywhere', async (t) => {
  t.strictSame(tag(parsePickle(b(P2, ']', '2', 'K', 1, 'a', '0', '.'))), ['list', [['num', doubleHex(1)]]])
  t.equal(parsePickle(b(P2, 'N', '(', 'K', 1, 'K', 2, '1', '.')), null)
  t.equal(parsePickle(b(P2, 'N', '(', '0', '.')), null, 'POP with nothing above the MARK drops the MARK')
  t.strictSame(parsePickle(b(P2, '(', 'K', 1, 'K', 2, 'l', '.')), [1, 2])
  t.strictSame(tag(parsePickle(b(P2, '(', sbu('a'), 'K', 1, 'd', '.'))), ['dict', [[['str', 'a'], ['num', doubleHex(1)]]]])
  const obj = parsePickle(b(P4, SHM, ')', '}', 0x92, '}', 'b', '.'))
  t.type(obj, ShmObject)
  t.type((obj as ShmObject).state, PyDict)
  t.equal(parsePickle(b(P5, 0x80, 2, 'N', 0x80, 4, '.')), null)
  t.strictSame(parsePickle(b(P2, 0x8a, 0, '.')), 0, 'an empty LONG1 is 0')
  t.strictSame(parsePickle(b(P2, 0x8a, 9, Buffer.alloc(9, 0xff), '.')), -1, 'a long -1 becomes a number')
  t.strictSame(parsePickle(b(P2, 0x8a, 8, u64(2n ** 63n), '.')), -(2n ** 63n))
  t.strictSame(parsePickle(b(P2, 'J', i32(-5), '.')), -5)
  t.equal(parsePickle(b(P4, 0x8d, u64(2n), 'hi', '.')), 'hi', 'BINUNICODE8')
  t.strictSame(parsePickle(b(P4, 0x8e, u64(2n), 'hi', '.')), Buffer.from('hi'), 'BINBYTES8')
  t.strictSame(parsePickle(b(P2, 'M', u16(0xffff), '.')), 0xffff)
  t.ok(Number.isNaN(parsePickle(b(P2, 'G', f64(NaN), '.'))))
  t.equal(parsePickle(b(P2, 'G', f64(-Infinity), '.')), -Infinity)
  t.ok(Object.is(parsePickle(b(P2, 'G', f64(-0), '.')), -0))
})

t.test('dict keys are compared the way Python compares them', async (t) => {
  const dict = (...items: Part[]): string => b(P3, '}', '(', ...items, 'u', '.').toString('base64')
  const big = b(0x8a, 8, u64(2n ** 60n))
  const streams = [
    dict('K', 1, sbu('int'), 0x88, sbu('bool'), 'G', f64(1), sbu('float')),
    dict(0x88, sbu('bool'), 'K', 1, sbu('int')),
    dict('G', f64(-0), sbu('negative zero'), 'K', 0, sbu('zero')),
    dict('C', 1, 'a', 'K', 1, sbu('a'), 'K', 2),
    dict('K', 1, sbu('x'), TUPLE2, 'K', 1, 0x88, sbu('x'), TUPLE2, 'K', 2, 'G', f64(1), sbu('x'), TUPLE2, 'K', 3),
    dict(big, sbu('int'), 'G', f64(2 ** 60), sbu('float')),
    dict('G', f64(NaN), 'K', 1, 'G', f64(NaN), 'K', 2),
    dict(')', 'K', 1, ')', 'K', 2, 'N', 'K', 3, 'N', 'K', 4),
    dict('C', 2, 'ab', 'q', 0, 'K', 1, 'h', 0, 'K', 2, 'C', 2, 'ab', 'K', 3),
    dict(0x8a, 13, Buffer.alloc(13, 0x11), 'K', 1, 0x8a, 13, Buffer.alloc(13, 0x11), 'K', 2),
    dict('G', f64(1e300), 'K', 1, 0x8b, i32(130), Buffer.from(BigInt(1e300).toString(16).padStart(260, '0'), 'hex').reverse(), 'K', 2),
    dict('K', 1, 'K', 2, TUPLE1, TUPLE2, 'K', 9, 'K', 1, 'G', f64(2), TUPLE1, TUPLE2, 'K', 3),
    b(P3, '}', 'q', 0, sbu('a'), 'K', 1, 's', '0', 'h', 0, sbu('a'), 'K', 2, 's', '.').toString('base64')
  ]
  const expected = await py<Tag[]>(String.raw`print(json.dumps([tag(restricted_loads(base64.b64decode(s))) for s in json.load(sys.stdin)]))`, streams)
  for (const [i, data] of streams.entries()) t.strictSame(tag(parsePickle(Buffer.from(data, 'base64'))), expected[i], `stream ${i}`)
  t.equal((parsePickle(Buffer.from(streams[0] ?? '', 'base64')) as PyDict).entries.length, 1, 'the check can fail')
})

// --- property-based

const isExpected = (data: Uint8Array): boolean => ['ok', 'refused', 'invalid'].includes(outcome(data))

t.test('fuzz: arbitrary bytes only ever return or throw PickleRefused/PickleInvalid', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), isExpected), { numRuns: 3000 })
  fc.assert(fc.property(fc.constantFrom(4, 5), fc.uint8Array({ maxLength: 300 }), (p, body) => isExpected(b(0x80, p, body, '.'))), { numRuns: 3000 })
  t.equal(outcome(b(P4, 'N', '.')), 'ok', 'the harness tells outcomes apart')
  t.equal(outcome(b(P4, '.')), 'invalid')
  t.equal(outcome(b(P2, glob('os', 'system'), '.')), 'refused')
})

/** Whatever the reader accepts, Python's own unpickler (restricted to the same globals) reads to the same value. */
async function agreesWithPython (t: Test, accepted: Buffer[], what: string): Promise<void> {
  const theirs = await py<Tag[]>(String.raw`
out = []
for data in json.load(sys.stdin):
    try:
        out.append(tag(restricted_loads(base64.b64decode(data))))
    except Exception as e:
        out.append(['error', repr(e)[:300]])
print(json.dumps(out))
`, accepted.map((d) => d.toString('base64')))
  const disagreements = accepted.flatMap((d, i) => {
    const ours = tag(parsePickle(d))
    return JSON.stringify(ours) === JSON.stringify(theirs[i]) ? [] : [{ pickle: d.toString('hex'), ours, python: theirs[i] }]
  })
  t.strictSame(disagreements, [], `${accepted.length} ${what} the reader accepted`)
}

t.test('fuzz: mutated real pickles only ever return or throw the two errors, and what returns agrees with Python', async (t) => {
  const cases = await realPickles
  const corpus = Object.values(cases).flat().map(([data]) => Buffer.from(data, 'base64')).filter((d) => d.length < 2000)
  const mutant = fc.tuple(fc.nat({ max: corpus.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }))
    .map(([i, ms]) => mutate(corpus[i] ?? b(), ms))
  fc.assert(fc.property(mutant, isExpected), { numRuns: 3000 })
  const accepted = fc.sample(mutant, { numRuns: 10_000 }).filter((d) => outcome(d) === 'ok')
  t.ok(accepted.length > 50, `${accepted.length} of 10000 mutants were accepted`)
  await agreesWithPython(t, accepted, 'mutants')
})

/** Random programs over the opcodes the reader runs, so the fuzzing gets past the first few bytes. */
const instruction: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom(...['(', ')', ']', '}', 'N', 'a', 'e', 's', 'u', '0', '1', '2', 't', 'l', 'd', 'b', 'R', 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x93, 0x94, 0x92]
    .map((op) => b(op))),
  fc.integer({ min: 0, max: 255 }).map((n) => b('K', n)),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((n) => b('J', i32(n))),
  fc.uint8Array({ maxLength: 9 }).map((x) => b(0x8a, x.length, x)),
  fc.constantFrom(0, -0, 1, 1.5, Infinity, 2 ** 60).map((n) => b('G', f64(n))), // no NaN: Python merges a memoized NaN key with itself
  fc.integer({ min: 0, max: 5 }).map((i) => b('q', i)),
  fc.integer({ min: 0, max: 5 }).map((i) => b('h', i)),
  fc.string({ unit: 'binary', maxLength: 4 }).map(sbu),
  fc.uint8Array({ maxLength: 4 }).map((x) => b('C', x.length, x)),
  fc.uint8Array({ maxLength: 4 }).map((x) => b(0x96, u64(BigInt(x.length)), x)),
  fc.constantFrom(SHM, glob('_codecs', 'encode'), glob('__builtin__', 'bytes'), sglob('builtins', 'bytearray'), sbu('latin1'), b(SHM, ')', NEWOBJ))
)
const program = fc.tuple(fc.constantFrom(2, 3, 4, 5), fc.array(instruction, { maxLength: 40 })).map(([p, ops]) => b(0x80, p, ...ops, '.'))

t.test('fuzz: random opcode programs only ever return or throw the two errors, and what returns agrees with Python', async (t) => {
  fc.assert(fc.property(program, isExpected), { numRuns: 5000 })
  const accepted = fc.sample(program, { numRuns: 20_000 }).filter((d) => outcome(d) === 'ok')
  t.ok(accepted.length > 50, `${accepted.length} of 20000 programs were accepted`)
  await agreesWithPython(t, accepted, 'programs')
})

// --- round trip: values made here, pickled by Python at random protocols, read back

type In = null | boolean | [string, unknown]
const inInt = fc.oneof(
  fc.integer(),
  fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }),
  fc.constantFrom(2n ** 53n, -(2n ** 53n), 2n ** 53n - 1n, 1n - 2n ** 53n, 2n ** 31n, -(2n ** 31n), 255n, 256n, 65535n, 65536n, 2n ** 63n, 2n ** 64n)
).map((n): In => ['int', String(n)])
const inFloat = fc.double().map((d): In => ['float', doubleHex(d)])
const inStr = fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ minLength: 250, maxLength: 300 })).map((s): In => ['str', s])
const bytesOf = (kind: string): fc.Arbitrary<In> => fc.uint8Array({ maxLength: 300 }).map((x): In => [kind, Buffer.from(x).toString('hex')])
const inBytes = fc.oneof(bytesOf('bytes'), bytesOf('bytearray'))
const inShm = fc.record({ name: fc.string(), shape: fc.array(fc.nat(), { maxLength: 4 }), dtype: fc.constantFrom('uint8', 'float32', '>i2') })
  .map((v): In => ['shm', v])
const { key: inKey } = fc.letrec<{ key: In }>((tie) => ({
  key: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), inInt, inFloat, inStr, bytesOf('bytes'),
    fc.array(tie('key'), { maxLength: 3 }).map((items): In => ['tuple', items]))
}))
const { value: inValue } = fc.letrec<{ value: In }>((tie) => ({
  value: fc.oneof({ maxDepth: 5, depthSize: 'small' },
    fc.constant(null), fc.boolean(), inInt, inFloat, inStr, inBytes, inShm,
    fc.array(tie('value'), { maxLength: 5 }).map((items): In => ['list', items]),
    fc.array(tie('value'), { maxLength: 5 }).map((items): In => ['tuple', items]),
    fc.array(fc.tuple(inKey, tie('value')), { maxLength: 5 }).map((items): In => ['dict', items]),
    tie('value').map((v): In => ['shared', v]))
}))

t.test('round trip: 300 random values pickled by Python at random protocols, plain and per-key', async (t) => {
  const seed = Number(process.env.PICKLE_FUZZ_SEED ?? Date.now() % 2 ** 31)
  t.comment(`seed ${seed} (PICKLE_FUZZ_SEED replays it)`)
  const batch = fc.sample(fc.tuple(inValue, fc.constantFrom(2, 3, 4, 5), fc.boolean()), { numRuns: 300, seed })
  const pickled = await py<Array<[string, Tag]>>(String.raw`
out = []
for value, protocol, per_key in json.load(sys.stdin):
    v = untag(value)
    data = pickle.dumps(v, protocol=protocol)
    outer = pickle.dumps({'v': data}, protocol=protocol) if per_key else data
    out.append([b64(outer), tag(restricted_loads(data))])
print(json.dumps(out))
`, batch.map(([v, p, perKey]) => [v, p, perKey]))
  t.equal(pickled.length, 300)
  const wrong = pickled.flatMap(([data, expected], i) => {
    const [value, protocol, perKey] = batch[i] ?? []
    let result = parsePickle(Buffer.from(data, 'base64'))
    if (perKey === true) {
      const inner = get(result, 'v')
      result = Buffer.isBuffer(inner) && looksLikePickle(inner) ? parsePickle(inner) : 'not a per-key pickle'
    }
    return JSON.stringify(tag(result)) === JSON.stringify(expected) ? [] : [{ value, protocol, perKey, got: tag(result), expected }]
  })
  t.strictSame(wrong, [])
})
