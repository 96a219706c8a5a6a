import { PyDict, PyTuple, type PyValue } from '../../src/codecs/pickle.js'

/** The JSON form pickled values are compared in; Python's `tag` in test/fixtures/pickles/prelude.py is its twin. */
export type Tag = null | boolean | [string, unknown]

/** A double's IEEE bytes, big-endian hex: how both sides write floats, NaNs and -0 included. */
export function doubleHex (n: number): string {
  const b = Buffer.alloc(8)
  b.writeDoubleBE(n)
  return b.toString('hex')
}

export function tag (v: PyValue): Tag {
  if (v === null || typeof v === 'boolean') return v
  if (typeof v === 'number') return ['num', Number.isNaN(v) ? 'nan' : doubleHex(v)]
  if (typeof v === 'bigint') return ['big', v.toString()]
  if (typeof v === 'string') return ['str', v]
  if (Buffer.isBuffer(v)) return ['bytes', v.toString('hex')]
  if (Array.isArray(v)) return ['list', v.map(tag)]
  if (v instanceof PyTuple) return ['tuple', v.items.map(tag)]
  if (v instanceof PyDict) return ['dict', v.entries.map(([k, x]) => [tag(k), tag(x)])]
  return ['shm', tag(v.state)]
}
