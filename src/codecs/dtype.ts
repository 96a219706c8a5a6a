/** The numeric dtypes a segment may hold, and numpy's spellings of them. */

type Kind = 'b' | 'i' | 'u' | 'f' | 'c'

export interface Dtype {
  kind: Kind
  itemsize: number
  bigEndian: boolean
  /** numpy's `str(np.dtype(x))` on a little-endian host: `float32`, `uint8`, `>i2`. */
  name: string
  /** The array-protocol string, as an .npy header wants it: `<f4`, `|u1`, `>i2`. */
  descr: string
}

const kindNames: Record<Kind, string> = { b: 'bool', i: 'int', u: 'uint', f: 'float', c: 'complex' }

function make (kind: Kind, itemsize: number, bigEndian: boolean): Dtype {
  const swapped = bigEndian && itemsize > 1
  const name = kind === 'b' ? 'bool' : `${kindNames[kind]}${itemsize * 8}`
  const order = itemsize === 1 ? '|' : swapped ? '>' : '<'
  return { kind, itemsize, bigEndian: swapped, name: swapped ? `>${kind}${itemsize}` : name, descr: `${order}${kind}${itemsize}` }
}

// numpy's names for the allowed types, as np.dtype() accepts them (LP64: long is 64-bit).
const names: Record<string, [Kind, number]> = {
  bool: ['b', 1],
  bool_: ['b', 1],
  int8: ['i', 1],
  int16: ['i', 2],
  int32: ['i', 4],
  int64: ['i', 8],
  uint8: ['u', 1],
  uint16: ['u', 2],
  uint32: ['u', 4],
  uint64: ['u', 8],
  float16: ['f', 2],
  float32: ['f', 4],
  float64: ['f', 8],
  complex64: ['c', 8],
  complex128: ['c', 16],
  byte: ['i', 1],
  short: ['i', 2],
  intc: ['i', 4],
  int: ['i', 8],
  int_: ['i', 8],
  long: ['i', 8],
  longlong: ['i', 8],
  intp: ['i', 8],
  ubyte: ['u', 1],
  ushort: ['u', 2],
  uintc: ['u', 4],
  uint: ['u', 8],
  ulong: ['u', 8],
  ulonglong: ['u', 8],
  uintp: ['u', 8],
  half: ['f', 2],
  single: ['f', 4],
  double: ['f', 8],
  float: ['f', 8],
  csingle: ['c', 8],
  cdouble: ['c', 16],
  complex: ['c', 16]
}

// One-character type codes (struct-module style).
const codes: Record<string, [Kind, number]> = {
  '?': ['b', 1],
  b: ['i', 1],
  B: ['u', 1],
  h: ['i', 2],
  H: ['u', 2],
  i: ['i', 4],
  I: ['u', 4],
  l: ['i', 8],
  L: ['u', 8],
  q: ['i', 8],
  Q: ['u', 8],
  p: ['i', 8],
  P: ['u', 8],
  e: ['f', 2],
  f: ['f', 4],
  d: ['f', 8],
  F: ['c', 8],
  D: ['c', 16]
}

const sizes: Record<Kind, number[]> = { b: [1], i: [1, 2, 4, 8], u: [1, 2, 4, 8], f: [2, 4, 8], c: [8, 16] }

const protocol = /^([<>=|]?)(?:([?bBhHiIlLqQpPefdFD])|([biufc])([0-9]{1,6}))$/

/** numpy's names, parsed once: a create parses every spec's dtype, and the objects are never changed. */
const byName = new Map(Object.entries(names).map(([text, [kind, size]]) => [text, Object.freeze(make(kind, size, false))]))

/** Parses a numpy dtype string, or returns undefined for anything outside the allowed numeric types. */
export function parseDtype (text: string): Dtype | undefined {
  const named = byName.get(text)
  if (named !== undefined) return named
  const m = protocol.exec(text)
  if (m === null) return undefined
  const big = m[1] === '>'
  const code = m[2] !== undefined ? codes[m[2]] : undefined
  if (code !== undefined) return make(code[0], code[1], big)
  const kind = m[3] as Kind
  const size = Number(m[4])
  if (!sizes[kind].includes(size)) return undefined
  return make(kind, size, big)
}

export const DTYPE_NAMES: readonly string[] = [...new Set(Object.values(names).map(([k, s]) => make(k, s, false).name))]
