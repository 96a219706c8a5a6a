/**
 * The writing half of the pickle codec, for the one thing the service ever pickles: NOS's registration map,
 * `{key: SharedMemoryNumpyObject | [SharedMemoryNumpyObject, ...]}`, which an unmodified NOS client `loads` to attach.
 * It writes the same values the reader (pickle.ts) reads, with the opcodes CPython's own pickler picks for them, so
 * that `pickle.loads` in any Python 3 gives what `pickle.dumps` of NOS's objects would give.
 */
import { PyDict, PyTuple, ShmObject, type PyValue } from './pickle.js'

export const PICKLE_PROTOCOLS = [2, 3, 4, 5] as const
export type PickleProtocol = typeof PICKLE_PROTOCOLS[number]

/** The class NOS's clients resolve on load: whatever module they have installed under this path is used. */
export const SHM_CLASS = Object.freeze({ module: 'nos.common.shm', name: 'SharedMemoryNumpyObject' })

/** The opcodes written here, as CPython numbers them. */
enum OP {
  PROTO = 0x80, FRAME = 0x95, STOP = 0x2e, MARK = 0x28, NONE = 0x4e, NEWTRUE = 0x88, NEWFALSE = 0x89,
  BININT = 0x4a, BININT1 = 0x4b, BININT2 = 0x4d, LONG1 = 0x8a, BINFLOAT = 0x47,
  BINUNICODE = 0x58, SHORT_BINUNICODE = 0x8c, BINBYTES = 0x42, SHORT_BINBYTES = 0x43,
  EMPTY_TUPLE = 0x29, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, TUPLE = 0x74,
  EMPTY_LIST = 0x5d, APPENDS = 0x65, EMPTY_DICT = 0x7d, SETITEMS = 0x75,
  GLOBAL = 0x63, STACK_GLOBAL = 0x93, NEWOBJ = 0x81, BUILD = 0x62, BINPUT = 0x71, BINGET = 0x68, MEMOIZE = 0x94
}

/** CPython batches APPENDS and SETITEMS by 1000, so that an unpickler's stack never holds a huge run at once. */
const BATCH = 1000

/**
 * `value` as a pickle of `protocol` (2-5). Strings, integers of any size, floats, bools, None, Buffers (as bytes;
 * protocol 3 and up), arrays (lists), PyTuple, PyDict and ShmObject (NOS's class, then its state through BUILD).
 */
export function writePickle (value: PyValue, protocol: PickleProtocol = 5): Buffer {
  if (!PICKLE_PROTOCOLS.includes(protocol)) throw new RangeError(`pickle protocol must be 2-5, not ${String(protocol)}`)
  const w = new Writer(protocol)
  w.value(value)
  const body = Buffer.concat([...w.chunks, Buffer.of(OP.STOP)])
  const head = Buffer.of(OP.PROTO, protocol)
  if (protocol < 4) return Buffer.concat([head, body])
  // One frame around everything: framing only lets a reader prefetch, and the whole answer is in memory anyway.
  const frame = Buffer.alloc(9)
  frame[0] = OP.FRAME
  frame.writeBigUInt64LE(BigInt(body.length), 1)
  return Buffer.concat([head, frame, body])
}

class Writer {
  readonly chunks: Buffer[] = []
  /** Whether NOS's class is in memo slot 0 (nothing else is memoized), so every later object names it in 2 bytes. */
  private classWritten = false

  constructor (private readonly protocol: PickleProtocol) {}

  value (v: PyValue): void {
    if (v === null) return this.op(OP.NONE)
    if (typeof v === 'boolean') return this.op(v ? OP.NEWTRUE : OP.NEWFALSE)
    if (typeof v === 'bigint') return this.int(v)
    if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0) ? this.int(BigInt(v)) : this.float(v)
    if (typeof v === 'string') return this.str(v)
    if (Buffer.isBuffer(v)) return this.bytes(v)
    if (Array.isArray(v)) return this.list(v)
    if (v instanceof PyTuple) return this.tuple(v.items)
    if (v instanceof PyDict) return this.dict(v.entries)
    return this.shm(v)
  }

  private op (...bytes: number[]): void { this.chunks.push(Buffer.from(bytes)) }
  private push (...parts: Buffer[]): void { this.chunks.push(...parts) }

  private int (n: bigint): void {
    if (n >= 0n && n < 256n) return this.op(OP.BININT1, Number(n))
    if (n >= 0n && n < 65536n) {
      const b = Buffer.alloc(3)
      b[0] = OP.BININT2
      b.writeUInt16LE(Number(n), 1)
      return this.push(b)
    }
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      const b = Buffer.alloc(5)
      b[0] = OP.BININT
      b.writeInt32LE(Number(n), 1)
      return this.push(b)
    }
    const digits = twosComplement(n)
    if (digits.length > 255) throw new RangeError('pickle writer: integers past 255 bytes are not needed here')
    this.chunks.push(Buffer.of(OP.LONG1, digits.length), digits)
  }

  private float (x: number): void {
    const b = Buffer.alloc(9)
    b[0] = OP.BINFLOAT
    b.writeDoubleBE(x, 1)
    this.chunks.push(b)
  }

  private str (s: string): void {
    const utf = Buffer.from(s, 'utf8')
    if (this.protocol >= 4 && utf.length < 256) return this.push(Buffer.of(OP.SHORT_BINUNICODE, utf.length), utf)
    const len = Buffer.alloc(4)
    len.writeUInt32LE(utf.length)
    this.chunks.push(Buffer.of(OP.BINUNICODE), len, utf)
  }

  private bytes (b: Buffer): void {
    if (this.protocol < 3) throw new RangeError('pickle writer: bytes need protocol 3 or later')
    if (b.length < 256) return this.push(Buffer.of(OP.SHORT_BINBYTES, b.length), b)
    const len = Buffer.alloc(4)
    len.writeUInt32LE(b.length)
    this.chunks.push(Buffer.of(OP.BINBYTES), len, b)
  }

  private tuple (items: PyValue[]): void {
    if (items.length === 0) return this.op(OP.EMPTY_TUPLE)
    if (items.length > 3) this.op(OP.MARK)
    for (const item of items) this.value(item)
    this.op(items.length > 3 ? OP.TUPLE : [OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][items.length - 1] as number)
  }

  private list (items: PyValue[]): void {
    this.op(OP.EMPTY_LIST)
    for (let i = 0; i < items.length; i += BATCH) {
      this.op(OP.MARK)
      for (const item of items.slice(i, i + BATCH)) this.value(item)
      this.op(OP.APPENDS)
    }
  }

  private dict (entries: Array<[PyValue, PyValue]>): void {
    this.op(OP.EMPTY_DICT)
    for (let i = 0; i < entries.length; i += BATCH) {
      this.op(OP.MARK)
      for (const [k, v] of entries.slice(i, i + BATCH)) { this.value(k); this.value(v) }
      this.op(OP.SETITEMS)
    }
  }

  /** NOS's objects pickle as `cls.__new__(cls)` then BUILD with their state, as `object.__reduce_ex__(2)` has it. */
  private shm (o: ShmObject): void {
    if (this.classWritten) {
      this.op(OP.BINGET, 0)
    } else {
      if (this.protocol >= 4) {
        this.str(SHM_CLASS.module)
        this.str(SHM_CLASS.name)
        this.op(OP.STACK_GLOBAL)
      } else {
        this.chunks.push(Buffer.of(OP.GLOBAL), Buffer.from(`${SHM_CLASS.module}\n${SHM_CLASS.name}\n`, 'latin1'))
      }
      this.op(...(this.protocol >= 4 ? [OP.MEMOIZE] : [OP.BINPUT, 0]))
      this.classWritten = true
    }
    this.op(OP.EMPTY_TUPLE, OP.NEWOBJ)
    this.value(o.state)
    this.op(OP.BUILD)
  }
}

/** Little-endian two's complement in the fewest bytes, as LONG1 wants it. */
function twosComplement (n: bigint): Buffer {
  const out: number[] = []
  let x = n
  for (;;) {
    const byte = Number(x & 0xffn)
    out.push(byte)
    x >>= 8n
    if ((x === 0n && (byte & 0x80) === 0) || (x === -1n && (byte & 0x80) !== 0)) break
  }
  return Buffer.from(out)
}
