/** The .npy preamble: writing exactly what numpy.save writes, and reading what numpy writes without eval. */
import { CodecError } from './codec-error.js'
import type { Dtype } from './dtype.js'

export interface NpyHeader {
  descr: string
  fortranOrder: boolean
  shape: number[]
  /** Bytes of preamble, magic included: the array data starts here. */
  headerLength: number
}

export class NpyHeaderError extends CodecError {
  constructor (what: string) {
    super('InvalidNpy', `npy header: ${what}`)
    this.name = 'NpyHeaderError'
  }
}

const MAGIC = Buffer.from('\x93NUMPY', 'latin1')
// numpy ≥ 1.14 aligns the data to 64 bytes, and pads the first dim for 21 digits so that appending rows can rewrite
// the header in place (numpy.lib.format.ARRAY_ALIGN, GROWTH_AXIS_MAX_DIGITS).
const ALIGN = 64
const GROWTH_DIGITS = 21
// v2/v3 lengths are 32-bit; nothing we accept needs more than a few hundred bytes, so a huge header is refused before
// anyone buffers it.
const MAX_HEADER_BYTES = 1024 * 1024
const MAX_DEPTH = 16
// A number (validated afterwards, so that `2.0` or `3L` get a precise message) or a name.
const WORD = /[+-]?[0-9][0-9a-zA-Z_.+-]*|[A-Za-z_][A-Za-z0-9_]*/y

/** The preamble numpy.save writes for a C-order array of this dtype and shape, byte for byte. */
export function npyHeader (dtype: Dtype, shape: readonly number[]): Buffer {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`npy: shape ${JSON.stringify(shape)} has an invalid dim ${d}`)
  }
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`
  let dict = `{'descr': '${dtype.descr}', 'fortran_order': False, 'shape': ${tuple}, }`
  if (shape.length > 0) dict += ' '.repeat(Math.max(0, GROWTH_DIGITS - String(shape[0]).length))
  // numpy uses the oldest version whose length field fits: 1.0 (uint16), else 2.0 (uint32); the header is ASCII, so
  // 3.0 (utf8) never applies. The closing '\n' counts, and an aligned header still gets a full 64 bytes of padding.
  const padded = (prefix: number): number => dict.length + 1 + ALIGN - ((prefix + dict.length + 1) % ALIGN)
  const major = padded(10) > 0xffff ? 2 : 1
  const prefix = major === 1 ? 10 : 12
  const out = Buffer.alloc(prefix + padded(prefix), ' ')
  MAGIC.copy(out)
  out[6] = major
  out[7] = 0
  if (major === 1) out.writeUInt16LE(out.length - prefix, 8)
  else out.writeUInt32LE(out.length - prefix, 8)
  out.write(dict, prefix, 'latin1')
  out[out.length - 1] = 0x0a
  return out
}

type Value =
  | { type: 'str', value: string }
  | { type: 'int', value: bigint }
  | { type: 'number', text: string }
  | { type: 'bool', value: boolean }
  | { type: 'none' }
  | { type: 'tuple' | 'list', items: Value[] }
  | { type: 'dict', entries: Array<[Value, Value]> }

const show = (v: Value): string => {
  switch (v.type) {
    case 'str': return JSON.stringify(v.value).replace(/^"|"$/g, "'")
    case 'int': return String(v.value)
    case 'number': return v.text
    case 'bool': return v.value ? 'True' : 'False'
    case 'none': return 'None'
    case 'tuple': return `(${v.items.map(show).join(', ')}${v.items.length === 1 ? ',' : ''})`
    case 'list': return `[${v.items.map(show).join(', ')}]`
    case 'dict': return `{${v.entries.map(([k, x]) => `${show(k)}: ${show(x)}`).join(', ')}}`
  }
}
const brief = (v: Value): string => {
  const s = show(v)
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

/**
 * A recursive-descent reader for the Python literals an .npy header may hold (str, int, bool, None, tuple, list,
 * dict): enough to recognise what numpy writes, and to say precisely what is wrong with anything else.
 */
class LiteralReader {
  private pos = 0
  constructor (private readonly text: string) {}

  document (): Value {
    const value = this.value(0)
    this.skip()
    if (this.pos < this.text.length) this.fail(`unexpected ${JSON.stringify(this.text.slice(this.pos, this.pos + 10).trimEnd())} after the dict`)
    return value
  }

  private fail (what: string): never {
    throw new NpyHeaderError(`${what} (at offset ${this.pos})`)
  }

  private skip (): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos] ?? '')) this.pos++
  }

  private value (depth: number): Value {
    if (depth > MAX_DEPTH) this.fail('nested too deeply')
    this.skip()
    const c = this.text[this.pos]
    if (c === undefined) this.fail('unexpected end of header')
    if (c === '{' || c === '(' || c === '[') return this.group(c, depth)
    if (c === "'" || c === '"') return this.string(c)
    WORD.lastIndex = this.pos
    const m = WORD.exec(this.text)
    if (m === null) this.fail(`unexpected ${JSON.stringify(c)}`)
    const word = m[0]
    this.pos += word.length
    if (word === 'True' || word === 'False') return { type: 'bool', value: word === 'True' }
    if (word === 'None') return { type: 'none' }
    if (/^[+-]?(?:0|[1-9][0-9]*)$/.test(word)) return { type: 'int', value: BigInt(word) }
    if (/^[+-]?[0-9]/.test(word)) return { type: 'number', text: word }
    return this.fail(`unexpected name ${JSON.stringify(word)}`)
  }

  private string (quote: string): Value {
    let out = ''
    for (let i = this.pos + 1; i < this.text.length; i++) {
      const c = this.text[i]
      if (c === quote) {
        this.pos = i + 1
        return { type: 'str', value: out }
      }
      if (c === '\n') break
      if (c === '\\') {
        const next = this.text[++i]
        if (next !== '\\' && next !== "'" && next !== '"') this.fail('unsupported escape sequence in a string')
        out += next
      } else out += c
    }
    return this.fail('unterminated string')
  }

  private group (open: '{' | '(' | '[', depth: number): Value {
    const close = { '{': '}', '(': ')', '[': ']' }[open]
    this.pos++
    const items: Value[] = []
    const entries: Array<[Value, Value]> = []
    let comma = false
    for (;;) {
      this.skip()
      if (this.text[this.pos] === close) break
      if (items.length + entries.length > 0 && !comma) this.fail(`expected ',' or '${close}'`)
      const item = this.value(depth + 1)
      if (open === '{') {
        this.skip()
        if (this.text[this.pos++] !== ':') this.fail("expected ':' after a dict key")
        entries.push([item, this.value(depth + 1)])
      } else items.push(item)
      this.skip()
      comma = this.text[this.pos] === ','
      if (comma) this.pos++
    }
    this.pos++
    if (open === '{') return { type: 'dict', entries }
    // Python: `(3)` is the int 3, `(3,)` a tuple.
    if (open === '(' && items.length === 1 && !comma) return items[0] as Value
    return { type: open === '(' ? 'tuple' : 'list', items }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Parses an .npy preamble from the start of `buf`: undefined when more bytes are needed, NpyHeaderError when it is
 * malformed (decided as early as the bytes allow, so a bad stream is refused before its header is buffered).
 */
export function parseNpyHeader (buf: Buffer): NpyHeader | undefined {
  const total = npyPreambleLength(buf)
  if (total === undefined || buf.length < total) return undefined
  const major = buf[6] ?? 0
  const start = major === 1 ? 10 : 12
  const raw = buf.subarray(start, total)
  let text: string
  if (major === 3) {
    try { text = utf8.decode(raw) } catch { throw new NpyHeaderError('a version 3.0 header is not valid UTF-8') }
  } else text = raw.toString('latin1')

  const dict = new LiteralReader(text).document()
  if (dict.type !== 'dict') throw new NpyHeaderError(`not a dict but ${brief(dict)}`)
  const fields = new Map<string, Value>()
  for (const [key, value] of dict.entries) {
    if (key.type !== 'str') throw new NpyHeaderError(`key ${brief(key)} is not a string`)
    if (!['descr', 'fortran_order', 'shape'].includes(key.value)) throw new NpyHeaderError(`unexpected key ${brief(key)}`)
    if (fields.has(key.value)) throw new NpyHeaderError(`duplicate key ${brief(key)}`)
    fields.set(key.value, value)
  }
  const get = (key: string): Value => {
    const value = fields.get(key)
    if (value === undefined) throw new NpyHeaderError(`missing key '${key}'`)
    return value
  }
  const descr = get('descr')
  if (descr.type === 'list') throw new NpyHeaderError(`descr is a list, i.e. a structured dtype, which is not supported: ${brief(descr)}`)
  if (descr.type !== 'str') throw new NpyHeaderError(`descr must be a string, not ${brief(descr)}`)
  const fortran = get('fortran_order')
  if (fortran.type !== 'bool') throw new NpyHeaderError(`fortran_order must be True or False, not ${brief(fortran)}`)
  const shape = get('shape')
  if (shape.type !== 'tuple') throw new NpyHeaderError(`shape must be a tuple, not ${brief(shape)}`)
  const dims = shape.items.map((d) => {
    if (d.type !== 'int') throw new NpyHeaderError(`shape ${brief(shape)} has a dim that is not an integer: ${brief(d)}`)
    if (d.value < 0n) throw new NpyHeaderError(`shape ${brief(shape)} has a negative dim`)
    if (d.value > BigInt(Number.MAX_SAFE_INTEGER)) throw new NpyHeaderError(`shape ${brief(shape)} has a dim over 2**53 - 1`)
    return Number(d.value)
  })
  return { descr: descr.value, fortranOrder: fortran.value, shape: dims, headerLength: total }
}

/** Bytes the fixed part of a preamble (magic, version, header length) may take: v2 and v3 have a 4-byte length. */
export const NPY_FIXED_BYTES = 12

/**
 * The whole preamble's length, read from its fixed part alone: undefined until the fixed part is all there, and
 * NpyHeaderError (as parseNpyHeader throws it) as soon as what is there is wrong. A reader that gets the preamble
 * in pieces can thus wait for exactly this many bytes, instead of trying to parse it after every piece.
 */
export function npyPreambleLength (buf: Buffer): number | undefined {
  const seen = Math.min(buf.length, MAGIC.length)
  if (!buf.subarray(0, seen).equals(MAGIC.subarray(0, seen))) throw new NpyHeaderError('wrong magic, not an .npy file')
  if (buf.length < 8) return undefined
  const [major, minor] = [buf[6] ?? 0, buf[7] ?? 0]
  if (minor !== 0 || major < 1 || major > 3) throw new NpyHeaderError(`unknown format version ${major}.${minor} (1.0, 2.0 and 3.0 are known)`)
  const start = major === 1 ? 10 : 12
  if (buf.length < start) return undefined
  const length = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8)
  if (length > MAX_HEADER_BYTES) throw new NpyHeaderError(`header length ${length} exceeds this service's limit of 1 MiB`)
  return start + length
}
