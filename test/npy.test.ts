import t from 'tap'
import fc from 'fast-check'
import { DTYPE_NAMES, parseDtype, type Dtype } from '../src/codecs/dtype.js'
import { NpyHeaderError, npyHeader, parseNpyHeader } from '../src/codecs/npy.js'
import { python } from './helpers/python.js'

const dtype = (s: string): Dtype => {
  const d = parseDtype(s)
  if (d === undefined) throw new Error(`test setup: ${s} must parse`)
  return d
}
const DTYPES = [...DTYPE_NAMES, '>i2', '>i4', '>i8', '>u2', '>u4', '>u8', '>f2', '>f4', '>f8', '>c8', '>c16', '>u1', '?'].map(dtype)
const u8 = dtype('uint8')
const SHAPES = [[], [0], [1], [2, 3], [0, 3], [3, 0], [7, 1, 5], [10], [123456789012345, 0], [0, 9007199254740991],
  Array<number>(32).fill(1), Array.from({ length: 32 }, (_, i) => i % 3 === 0 ? 2 : 1)]

/** A preamble around `dict` as numpy would frame it, or with another alignment, version or length field. */
const frame = (dict: string, major = 1, align = 64): Buffer => {
  const prefix = major === 1 ? 10 : 12
  const body = Buffer.from(dict, major === 3 ? 'utf8' : 'latin1')
  const pad = (align - ((prefix + body.length + 1) % align)) % align
  const out = Buffer.alloc(prefix + body.length + pad + 1, ' ')
  out.write('\x93NUMPY', 'latin1')
  out[6] = major
  out[7] = 0
  if (major === 1) out.writeUInt16LE(out.length - prefix, 8)
  else out.writeUInt32LE(out.length - prefix, 8)
  body.copy(out, prefix)
  out[out.length - 1] = 0x0a
  return out
}
const head = (shape = "'shape': (3,)", descr = "'descr': '<f4'", fortran = "'fortran_order': False"): string => `{${descr}, ${fortran}, ${shape}, }`

t.test('npyHeader writes exactly what np.save writes, for every dtype and shape', async (t) => {
  const cases = DTYPES.flatMap((d) => SHAPES.map((shape) => ({ descr: d.descr, shape })))
  const numpy = await python<string[]>(`
import io, json, sys
import numpy as np
out = []
for c in json.load(sys.stdin):
    a = np.zeros(tuple(c['shape']), dtype=np.dtype(c['descr']))
    f = io.BytesIO()
    np.save(f, a)
    raw = f.getvalue()
    out.append(raw[:len(raw) - a.nbytes].hex())
print(json.dumps(out))
`, cases)
  cases.forEach((c, i) => {
    const mine = npyHeader(dtype(c.descr), c.shape)
    t.equal(mine.toString('hex'), numpy[i], `${c.descr} (${c.shape.join(', ')})`)
    t.equal(mine.length % 64, 0)
  })
})

t.test('npyHeader pads as numpy does at every header length modulo 64 (a full 64 bytes when already aligned)', async (t) => {
  // Each extra dim adds 3 characters and each digit 1, so these shapes reach every residue modulo 64.
  const shapes = Array.from({ length: 31 * 16 }, (_, i) => [0, ...Array<number>(i % 31).fill(1), 10 ** Math.floor(i / 31)])
  const numpy = await python<string[]>(`
import io, json, sys
import numpy as np
out = []
for shape in json.load(sys.stdin):
    f = io.BytesIO()
    np.save(f, np.zeros(tuple(shape), dtype=np.uint8))
    out.append(f.getvalue().hex())
print(json.dumps(out))
`, shapes)
  let fullPad = 0
  shapes.forEach((shape, i) => {
    t.equal(npyHeader(u8, shape).toString('hex'), numpy[i], `(${shape.join(', ')})`)
    // '}', then 20 spaces for the first dim's growth (21 digits less the 1 of '0'), then the alignment padding
    if (/\} {84}\n$/.test(Buffer.from(numpy[i] ?? '', 'hex').toString('latin1'))) fullPad++
  })
  t.ok(fullPad > 0, `the aligned case came up ${fullPad} times`)
})

t.test('npyHeader switches to version 2.0 exactly where numpy does (a header over 65535 bytes)', async (t) => {
  // A 1 MiB header cannot come from a real array (numpy allows 64 dims); numpy's own header writer takes any dict.
  const ones = (n: number): number[] => Array<number>(n).fill(1)
  let n = 20000
  while (npyHeader(dtype('<f4'), ones(n))[6] === 1) n++
  const cases = [n - 1, n, 5000].map((k) => ({ descr: '<f4', shape: k === 5000 ? Array<number>(k).fill(123456789012345) : ones(k) }))
  const numpy = await python<string[]>(`
import io, json, sys, warnings
try:
    from numpy.lib import _format_impl as fmt
except ImportError:
    from numpy.lib import format as fmt
warnings.simplefilter('ignore')
out = []
for c in json.load(sys.stdin):
    f = io.BytesIO()
    fmt._write_array_header(f, {'descr': c['descr'], 'fortran_order': False, 'shape': tuple(c['shape'])}, None)
    out.append(f.getvalue().hex())
print(json.dumps(out))
`, cases)
  const versions = cases.map((c, i) => {
    const mine = npyHeader(dtype(c.descr), c.shape)
    t.equal(mine.toString('hex'), numpy[i], `${c.shape.length} dims`)
    return mine[6]
  })
  t.same(versions, [1, 2, 2])
})

t.test('npyHeader refuses shapes numpy could not hold', async (t) => {
  for (const shape of [[-1], [1.5], [Number.NaN], [2 ** 53], [Infinity]]) t.throws(() => npyHeader(dtype('uint8'), shape), RangeError, String(shape))
})

t.test('parseNpyHeader reads what numpy writes: versions 1.0, 2.0, 3.0, C and Fortran order', async (t) => {
  const cases = [
    { dtype: '<f4', shape: [2, 3], order: 'C', version: null },
    { dtype: '>i2', shape: [2, 3], order: 'F', version: null },
    { dtype: '|b1', shape: [], order: 'C', version: null },
    { dtype: '<c16', shape: [0], order: 'C', version: null },
    { dtype: '<u8', shape: [4, 1, 2], order: 'C', version: [2, 0] },
    { dtype: '<f2', shape: [3], order: 'C', version: [3, 0] },
    { dtype: '|u1', shape: Array<number>(32).fill(1), order: 'C', version: [2, 0] }
  ]
  const numpy = await python<Array<{ hex: string, shape: number[], fortran: boolean, descr: string, offset: number }>>(`
import io, json, sys
import numpy as np
out = []
for c in json.load(sys.stdin):
    a = np.zeros(tuple(c['shape']), dtype=c['dtype'], order=c['order'])
    f = io.BytesIO()
    np.lib.format.write_array(f, a, version=tuple(c['version']) if c['version'] else None)
    raw = f.getvalue()
    b = np.load(io.BytesIO(raw))
    out.append({'hex': raw.hex(), 'shape': list(b.shape), 'fortran': bool(b.flags.f_contiguous and not b.flags.c_contiguous),
                'descr': b.dtype.str, 'offset': len(raw) - b.nbytes})
print(json.dumps(out))
`, cases)
  numpy.forEach((n, i) => {
    const raw = Buffer.from(n.hex, 'hex')
    t.equal(raw[6], cases[i]?.version?.[0] ?? 1, 'the version numpy wrote')
    t.same(parseNpyHeader(raw), { descr: n.descr, fortranOrder: n.fortran, shape: n.shape, headerLength: n.offset }, JSON.stringify(cases[i]))
  })
})

t.test('a structured dtype numpy writes (in a 3.0 header, for its non-latin-1 field name) is refused as such', async (t) => {
  const hex = await python<string>(`
import io, json, warnings
import numpy as np
warnings.simplefilter('ignore')
f = io.BytesIO()
np.save(f, np.zeros(2, dtype=[('ψ', '<f4'), ('b', '<i8')]))
print(json.dumps(f.getvalue().hex()))
`)
  const raw = Buffer.from(hex, 'hex')
  t.equal(raw[6], 3)
  t.throws(() => parseNpyHeader(raw), { name: 'NpyHeaderError', message: /^npy header: descr is a list, i\.e\. a structured dtype, .*'ψ'/ })
})

t.test('parseNpyHeader tolerates the spellings numpy accepts, and agrees with numpy on them', async (t) => {
  const variants = [
    frame("{'shape': (2, 3), 'fortran_order': True, 'descr': '>f8'}"),
    frame('{"descr": "<i4", "fortran_order": False, "shape": ()}'),
    frame("{'descr': '|u1', 'fortran_order': False, 'shape': (3,),}", 1, 16), // numpy < 1.14 aligned to 16
    frame("{\n  'descr' : '<f4' ,\n\t'fortran_order':False,'shape':( 4 , 5 , ) }\n"),
    frame(head("'shape': (1, 2)"), 2),
    frame(head("'shape': (0,)", "'descr': '<u2'"), 3)
  ]
  const numpy = await python<Array<{ shape: number[], fortran: boolean, descr: string, offset: number }>>(`
import io, json, sys
import numpy as np
out = []
for h in json.load(sys.stdin):
    f = io.BytesIO(bytes.fromhex(h))
    major, minor = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    if major == 3:
        from numpy.lib import _format_impl
        read = lambda f: _format_impl._read_array_header(f, (3, 0))
    shape, fortran, dtype = read(f)
    out.append({'shape': list(shape), 'fortran': fortran, 'descr': dtype.str, 'offset': f.tell()})
print(json.dumps(out))
`, variants.map((v) => v.toString('hex')))
  variants.forEach((v, i) => {
    const n = numpy[i]
    t.same(parseNpyHeader(v), n && { descr: n.descr, fortranOrder: n.fortran, shape: n.shape, headerLength: n.offset }, v.subarray(10).toString().trim())
  })
})

t.test('parseNpyHeader reads the escapes repr() writes for quotes and backslashes (the descr is checked by the caller)', async (t) => {
  t.equal(parseNpyHeader(frame(head(undefined, String.raw`'descr': 'a\\b\'c"'`)))?.descr, 'a\\b\'c"')
  t.equal(parseNpyHeader(frame(head(undefined, String.raw`'descr': "\"'"`)))?.descr, '"\'')
})

t.test('parseNpyHeader returns undefined for every proper prefix of a preamble, and ignores what follows it', async (t) => {
  for (const preamble of [npyHeader(dtype('float32'), [2, 3]), frame(head(), 2), frame(head(), 3)]) {
    let undecided = 0
    for (let n = 0; n < preamble.length; n++) if (parseNpyHeader(preamble.subarray(0, n)) === undefined) undecided++
    t.equal(undecided, preamble.length, `${preamble.length}-byte preamble, version ${preamble[6]}`)
    const withData = Buffer.concat([preamble, Buffer.from('{not a header}')])
    t.equal(parseNpyHeader(withData)?.headerLength, preamble.length)
  }
})

t.test('parseNpyHeader round-trips npyHeader for any dtype and shape', async (t) => {
  fc.assert(fc.property(fc.constantFrom(...DTYPES), fc.array(fc.maxSafeNat(), { maxLength: 40 }), (d, shape) => {
    const bytes = npyHeader(d, shape)
    t.same(parseNpyHeader(bytes), { descr: d.descr, fortranOrder: false, shape, headerLength: bytes.length })
  }), { numRuns: 200 })
})

t.test('parseNpyHeader refuses malformed preambles with a message that says what is wrong', async (t) => {
  const magic = (major: number, minor: number, length: number[] = []): Buffer => Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, minor, ...length])
  const deep = `(${'('.repeat(20)}3,${'),'.repeat(20)})`
  const cases: Array<[string, Buffer, RegExp]> = [
    ['not npy at all', Buffer.from('PK\x03\x04'), /wrong magic/],
    ['magic off by one byte, decided early', Buffer.from('\x93NUMPZ', 'latin1'), /wrong magic/],
    ['version 1.1', magic(1, 1), /unknown format version 1\.1/],
    ['version 4.0', magic(4, 0), /unknown format version 4\.0/],
    ['version 0.0', magic(0, 0), /unknown format version 0\.0/],
    ['a 2.0 header over 1 MiB, refused from its length alone', magic(2, 0, [1, 0, 16, 0]), /header length 1048577 exceeds .* 1 MiB/],
    ['3.0 header that is not UTF-8', frame(head("'shape': (3,), 'x\xff': 1"), 2).fill(3, 6, 7), /not valid UTF-8/],
    ['empty header', magic(1, 0, [0, 0]), /unexpected end of header/],
    ['a list', frame("['descr', 'fortran_order', 'shape']"), /not a dict but \['descr'/],
    ['a tuple', frame("('<f4', False, (3,))"), /not a dict/],
    ['a string', frame("'<f4'"), /not a dict but '<f4'/],
    ['missing shape', frame("{'descr': '<f4', 'fortran_order': False}"), /missing key 'shape'/],
    ['missing descr', frame("{'fortran_order': False, 'shape': ()}"), /missing key 'descr'/],
    ['an extra key', frame(head("'shape': (3,), 'extra': 1")), /unexpected key 'extra'/],
    ['a duplicate key', frame(head("'shape': (3,), 'descr': '<f4'")), /duplicate key 'descr'/],
    ['a key that is not a string', frame("{1: 2, 'descr': '<f4', 'fortran_order': False, 'shape': ()}"), /key 1 is not a string/],
    ['a negative dim', frame(head("'shape': (2, -1)")), /negative dim/],
    ['a float dim', frame(head("'shape': (2.0, 3)")), /not an integer: 2\.0/],
    ["Python 2's 3L", frame(head("'shape': (3L,)")), /not an integer: 3L/],
    ['a leading zero', frame(head("'shape': (01,)")), /not an integer: 01/],
    ['a bool dim', frame(head("'shape': (True,)")), /not an integer: True/],
    ['a nested dim', frame(head("'shape': ((2, 3),)")), /not an integer: \(2, 3\)/],
    ['a dim over 2**53 - 1', frame(head("'shape': (9007199254740992,)")), /over 2\*\*53 - 1/],
    ['shape as a list', frame(head("'shape': [2, 3]")), /shape must be a tuple, not \[2, 3\]/],
    ['shape as (3), an int', frame(head("'shape': (3)")), /shape must be a tuple, not 3/],
    ['a structured dtype', frame(head(undefined, "'descr': [('a', '<f4'), ('b', '<i8')]")), /descr is a list, i\.e\. a structured dtype/],
    ['descr as an int', frame(head(undefined, "'descr': 4")), /descr must be a string, not 4/],
    ['descr as None', frame(head(undefined, "'descr': None")), /descr must be a string, not None/],
    ['fortran_order as 0', frame(head(undefined, undefined, "'fortran_order': 0")), /fortran_order must be True or False, not 0/],
    ["fortran_order as 'False'", frame(head(undefined, undefined, "'fortran_order': 'False'")), /fortran_order must be True or False/],
    ['lower-case false', frame(head(undefined, undefined, "'fortran_order': false")), /unexpected name "false"/],
    ['a call', frame("__import__('os').system('true')"), /unexpected name "__import__"/],
    ['a bytes literal', frame(head(undefined, "'descr': b'<f4'")), /unexpected name "b"/],
    ['an escape sequence', frame(head(undefined, "'descr': '\\x3cf4'")), /unsupported escape/],
    ['an unterminated string', frame("{'descr': '<f4"), /unterminated string/],
    ['a quote closed too late', frame("{'descr': '<f4, 'fortran_order': False, 'shape': ()}"), /expected ',' or '}'/],
    ['a string across lines', frame("{'descr': '<f4\n'}"), /unterminated string/],
    ['a missing comma', frame("{'descr': '<f4' 'fortran_order': False, 'shape': ()}"), /expected ',' or '}'/],
    ['a double comma', frame(head("'shape': (3,),")), /unexpected ","/],
    ['a missing colon', frame("{'descr' '<f4'}"), /expected ':'/],
    ['an unclosed dict', frame("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), "), /unexpected end of header/],
    ['garbage after the dict', frame(head() + ' x'), /unexpected "x" after the dict/],
    ['two dicts', frame(head() + head()), /after the dict/],
    ['nesting bomb', frame(head(`'shape': ${deep}`)), /nested too deeply/],
    ['a NUL', frame(head().replace(' ', '\0')), /unexpected "\\u0000"/]
  ]
  for (const [what, bytes, message] of cases) {
    t.throws(() => parseNpyHeader(bytes), NpyHeaderError, what)
    try {
      parseNpyHeader(bytes)
    } catch (err) {
      t.match((err as Error).message, /^npy header: /, `${what}: prefix`)
      t.match((err as Error).message, message, `${what}: ${(err as Error).message}`)
    }
  }
})
