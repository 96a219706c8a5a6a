import t from 'tap'
import { parseDtype, DTYPE_NAMES } from '../src/codecs/dtype.js'
import { python } from './helpers/python.js'

// Every spelling we might meet: numpy's names, and array-protocol strings with each byte-order mark.
const candidates = (): string[] => {
  const names = ['bool', 'bool_', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32', 'float64',
    'complex64', 'complex128', 'byte', 'short', 'intc', 'int', 'int_', 'long', 'longlong', 'intp', 'ubyte', 'ushort', 'uintc', 'uint',
    'ulong', 'ulonglong', 'uintp', 'half', 'single', 'double', 'float', 'csingle', 'cdouble', 'complex', 'longdouble', 'float128',
    'complex256', 'object', 'str', 'bytes', 'void', 'datetime64', 'timedelta64', 'bool8', 'int0', 'Float32', 'float32 ', '']
  const out = [...names]
  for (const order of ['', '<', '>', '=', '|', '!']) {
    for (const c of '?bBhHiIlLqQpPefdFDgGOSUVMmaxz') out.push(order + c)
    for (const k of 'biufcSUVMmO') for (const n of ['1', '2', '4', '8', '16', '3', '32', '01', '001', '0', '0004']) out.push(order + k + n)
    for (const n of names.slice(0, 15)) out.push(order + n)
  }
  return out
}

t.test('accepts exactly what numpy accepts among the numeric dtypes, and answers numpy\'s canonical name', async (t) => {
  const list = candidates()
  const truth = await python<Record<string, string | null>>(`
import json, sys, warnings
import numpy as np
warnings.simplefilter('ignore')
allowed = {np.dtype(x) for x in ['bool','int8','int16','int32','int64','uint8','uint16','uint32','uint64','float16','float32','float64','complex64','complex128']}
allowed |= {d.newbyteorder('>') for d in allowed}
out = {}
for s in json.load(sys.stdin):
    try:
        d = np.dtype(s)
        out[s] = str(d) if d in allowed and d.fields is None and d.subdtype is None else None
    except Exception:
        out[s] = None
print(json.dumps(out))
`, list)
  for (const s of list) {
    t.equal(parseDtype(s)?.name ?? null, truth[s], `dtype ${JSON.stringify(s)}`)
  }
  // And the answer round-trips through numpy itself: np.dtype(answer) and np.dtype(descr) are the dtype asked for,
  // and str() of it is the answer again.
  const accepted = list.filter((s) => truth[s] !== null).map((s) => ({ s, name: parseDtype(s)?.name, descr: parseDtype(s)?.descr }))
  const trips = await python<Array<[string, boolean, boolean, boolean]>>(`
import json, sys
import numpy as np
print(json.dumps([[a['s'], np.dtype(a['name']) == np.dtype(a['s']), str(np.dtype(a['name'])) == a['name'], np.dtype(a['descr']) == np.dtype(a['s'])] for a in json.load(sys.stdin)]))
`, accepted)
  t.equal(trips.length, accepted.length)
  for (const [s, same, canonical, descr] of trips) t.ok(same && canonical && descr, `${JSON.stringify(s)} round-trips: same ${same}, canonical ${canonical}, descr ${descr}`)
  for (const name of DTYPE_NAMES) t.equal(parseDtype(name)?.name, name)
})

t.test('descr is the array-protocol string an .npy header carries', async (t) => {
  t.equal(parseDtype('float32')?.descr, '<f4')
  t.equal(parseDtype('>i2')?.descr, '>i2')
  t.equal(parseDtype('|u1')?.descr, '|u1')
  t.equal(parseDtype('?')?.descr, '|b1')
  t.equal(parseDtype('>u1')?.name, 'uint8')
  t.equal(parseDtype('__proto__'), undefined)
  t.equal(parseDtype('constructor'), undefined)
})
