/**
 * A strict reader for the pickles NOS clients send (protocols 2-5). It never imports or calls anything: opcodes are
 * interpreted into plain values, NOS's one class becomes a ShmObject carrying its raw state, and every other global
 * is refused by name as soon as it is named.
 */
import { CodecError } from './codec-error.js'

export type PyValue = null | boolean | number | bigint | string | Buffer | PyValue[] | PyTuple | PyDict | ShmObject

export class PyTuple {
  constructor (readonly items: PyValue[]) {}
}

/** Insertion order is kept; a key equal to an earlier one (as Python compares them) overwrites its value. */
export class PyDict {
  constructor (readonly entries: Array<[PyValue, PyValue]>) {}
}

/** A `nos.common.shm.SharedMemoryNumpyObject`: `state` is what BUILD received, unchecked. */
export class ShmObject {
  constructor (readonly state: PyValue) {}
}

export interface PickleLimits { maxBytes: number, maxDepth: number, maxItems: number, maxMemo: number }

export const DEFAULT_PICKLE_LIMITS: PickleLimits = Object.freeze({ maxBytes: 1024 * 1024, maxDepth: 32, maxItems: 100_000, maxMemo: 100_000 })

/** The final shape check recurses once per nesting level, so the depth limit also bounds the JS stack. */
const MAX_DEPTH_LIMIT = 1000

const clip = (text: string): string => text.length > 200 ? `${text.slice(0, 200)}...` : text

export class PickleRefused extends CodecError {
  override readonly name = 'PickleRefused'
  constructor (readonly global: string, at: number, why?: string) {
    super('PickleRefused', `pickle: refused global "${clip(global)}" at byte ${at}${why === undefined ? '' : `: ${why}`}`)
  }
}

const limitIn = (message: string): keyof PickleLimits | undefined =>
  /\((maxBytes|maxDepth|maxItems|maxMemo)\)/.exec(message)?.[1] as keyof PickleLimits | undefined

/** A malformed pickle, or one over a limit (LimitExceeded then: every limit message names its limit). */
export class PickleInvalid extends CodecError {
  override readonly name = 'PickleInvalid'
  constructor (message: string) {
    super(limitIn(message) === undefined ? 'InvalidPickle' : 'LimitExceeded', message)
  }

  /** The limit that was passed, when that is what went wrong. */
  get limit (): keyof PickleLimits | undefined {
    return limitIn(this.message)
  }
}

/** Opcodes as CPython numbers them; the enum's reverse mapping names them in messages. */
enum OP {
  MARK = 0x28, STOP = 0x2e, POP = 0x30, POP_MARK = 0x31, DUP = 0x32, FLOAT = 0x46, INT = 0x49, BININT = 0x4a, BININT1 = 0x4b,
  LONG = 0x4c, BININT2 = 0x4d, NONE = 0x4e, PERSID = 0x50, BINPERSID = 0x51, REDUCE = 0x52, STRING = 0x53, BINSTRING = 0x54,
  SHORT_BINSTRING = 0x55, UNICODE = 0x56, BINUNICODE = 0x58, APPEND = 0x61, BUILD = 0x62, GLOBAL = 0x63, DICT = 0x64,
  EMPTY_DICT = 0x7d, APPENDS = 0x65, GET = 0x67, BINGET = 0x68, INST = 0x69, LONG_BINGET = 0x6a, LIST = 0x6c, EMPTY_LIST = 0x5d,
  OBJ = 0x6f, PUT = 0x70, BINPUT = 0x71, LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74, EMPTY_TUPLE = 0x29, SETITEMS = 0x75,
  BINFLOAT = 0x47, PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86,
  TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = 0x42, SHORT_BINBYTES = 0x43,
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f, ADDITEMS = 0x90, FROZENSET = 0x91,
  NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97,
  READONLY_BUFFER = 0x98
}

/** Starts with PROTO 2-5 and ends with STOP: how a per-key pickle is told apart from plain bytes. */
export function looksLikePickle (data: Uint8Array): boolean {
  const proto = data[1] ?? 0
  return data.length >= 3 && data[0] === OP.PROTO && proto >= 2 && proto <= 5 && data[data.length - 1] === OP.STOP
}

/**
 * What the pickles of one request have used so far of maxItems and maxBytes. Given to every parsePickle of the
 * request, it makes those limits bound them all together: a pickle nested in another (or one bytes object referenced
 * from many keys, parsed at each) gets what is left instead of a fresh allowance.
 */
export interface PickleBudget { items: number, bytes: number }

export interface PickleOptions extends Partial<PickleLimits> {
  /** Spent (and added to) by this parse; a fresh one for each parse when absent. */
  budget?: PickleBudget | undefined
}

export function parsePickle (data: Uint8Array, options: PickleOptions = {}): PyValue {
  const merged = mergeLimits(options)
  const budget = options.budget ?? { items: 0, bytes: 0 }
  const allowance = new Allowance(merged, budget)
  if (data.length > allowance.bytes) {
    throw new PickleInvalid(`pickle: ${data.length} bytes is over the limit of ${merged.maxBytes}${allowance.shared} (maxBytes) at byte 0`)
  }
  const reader = new Reader(data, allowance)
  const result = reader.run()
  budget.items += Math.max(reader.created, allowance.expanded)
  budget.bytes += Math.max(data.length, reader.encoded)
  return result
}

/** What one parse may use: the limits, less what earlier parses sharing its budget have used. */
class Allowance {
  readonly items: number
  readonly bytes: number
  /** Said in every limit message when earlier parses have spent part of the budget. */
  readonly shared: string
  /** Values in the result once shared references are expanded, set by the final shape check. */
  expanded = 0

  constructor (readonly limits: PickleLimits, budget: PickleBudget) {
    this.items = Math.max(0, limits.maxItems - budget.items)
    this.bytes = Math.max(0, limits.maxBytes - budget.bytes)
    this.shared = budget.items > 0 || budget.bytes > 0 ? ' with the pickles read before it' : ''
  }
}

function mergeLimits (limits: Partial<PickleLimits> = {}): PickleLimits {
  const merged = { ...DEFAULT_PICKLE_LIMITS }
  for (const key of Object.keys(merged) as Array<keyof PickleLimits>) {
    const value = limits[key] ?? merged[key]
    if (!Number.isSafeInteger(value) || value < 0 || (key === 'maxDepth' && value > MAX_DEPTH_LIMIT)) {
      throw new RangeError(`pickle limits: ${key} must be an integer from 0${key === 'maxDepth' ? ` to ${MAX_DEPTH_LIMIT}` : ''}`)
    }
    merged[key] = value
  }
  return merged
}

/** What each allowed global may be used for; anything else is refused when it is named. */
type Callable = 'shm' | 'encode' | 'bytes' | 'bytearray'
const allowed = new Map<string, Map<string, Callable>>([
  ['nos.common.shm', new Map([['SharedMemoryNumpyObject', 'shm']])],
  // Protocol 2 has no bytes opcodes: bytes become _codecs.encode(latin-1 text), empty bytes bytes(), and
  // bytearray (before protocol 5's BYTEARRAY8) is bytearray(bytes). At protocol 2 builtins get Python 2's name.
  ['_codecs', new Map([['encode', 'encode']])],
  ['builtins', new Map([['bytes', 'bytes'], ['bytearray', 'bytearray']])],
  ['__builtin__', new Map([['bytes', 'bytes'], ['bytearray', 'bytearray']])]
])

class Global {
  constructor (readonly name: string, readonly callable: Callable) {}
}

/** A stack or memo entry: a value, or an allowed global waiting to be called. */
type Item = PyValue | Global

/** A bytes or tuple key interned by content (equal keys, one token), or a NaN (equal to nothing). */
class Token {
  constructor (readonly id: number) {}
}
type Key = null | number | bigint | string | Token

/**
 * Dict keys compared as Python compares them: True == 1 == 1.0, -0.0 == 0, b'a' != 'a'. Keys of bytes and tuples
 * are interned into tokens once per object, so a memoized key reused many times costs nothing more.
 */
class Keys {
  readonly bytearrays = new WeakSet<Buffer>()
  private readonly tokens = new Map<string, Token>()
  private readonly ids = new Map<string | bigint, number>()
  private readonly buffers = new WeakMap<Buffer, Token>()
  /** A tuple with no entry here holds something unhashable. */
  private readonly tuples = new WeakMap<PyTuple, Token>()
  private readonly indexes = new WeakMap<PyDict, Map<Key, number>>()
  private count = 0

  /** undefined: unhashable in Python. */
  of (v: PyValue): Key | undefined {
    if (v === null || typeof v === 'string' || typeof v === 'bigint') return v
    if (typeof v === 'boolean') return v ? 1 : 0
    if (typeof v === 'number') {
      if (Number.isNaN(v)) return new Token(this.count++)
      return Number.isInteger(v) && !Number.isSafeInteger(v) ? BigInt(v) : v
    }
    if (v instanceof PyTuple) return this.tuples.get(v)
    if (Buffer.isBuffer(v)) return this.bytes(v)
    return undefined
  }

  /** Tuples are immutable, so their key is settled (from their items' keys) when they are made. */
  noteTuple (t: PyTuple): void {
    const parts: string[] = []
    for (const item of t.items) {
      const key = this.of(item)
      if (key === undefined) return
      parts.push(this.describe(key))
    }
    this.tuples.set(t, this.intern(`t${parts.join(',')}`))
  }

  index (d: PyDict): Map<Key, number> {
    let index = this.indexes.get(d)
    if (index === undefined) this.indexes.set(d, index = new Map())
    return index
  }

  private bytes (b: Buffer): Token | undefined {
    if (this.bytearrays.has(b)) return undefined
    let token = this.buffers.get(b)
    if (token === undefined) this.buffers.set(b, token = this.intern(`b${b.toString('latin1')}`))
    return token
  }

  private describe (key: Key): string {
    if (key === null) return 'n'
    if (typeof key === 'number') return `d${key}`
    if (key instanceof Token) return `t${key.id}`
    let id = this.ids.get(key)
    if (id === undefined) this.ids.set(key, id = this.count++)
    return `p${id}`
  }

  private intern (description: string): Token {
    let token = this.tokens.get(description)
    if (token === undefined) this.tokens.set(description, token = new Token(this.count++))
    return token
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

class Reader {
  private pos = 0
  /** Offset of the opcode being run, for messages. */
  private at = 0
  private readonly stack: Item[] = []
  /** Stack heights at each open MARK; items below the last one are out of reach, as in CPython. */
  private readonly marks: number[] = []
  private readonly memo = new Map<number, Item>()
  private readonly fresh = new Set<ShmObject>()
  private readonly keys = new Keys()
  private readonly view: DataView
  /** Where the current FRAME ends; -1 outside frames. */
  private frameEnd = -1
  created = 0
  encoded = 0
  private readonly limits: PickleLimits

  constructor (private readonly data: Uint8Array, private readonly allowance: Allowance) {
    this.limits = allowance.limits
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  }

  run (): PyValue {
    while (this.pos < this.data.length) {
      this.at = this.pos
      const op = this.u8()
      if (op === OP.STOP) return this.stop()
      this.step(op)
    }
    throw this.invalid(`truncated: no STOP after ${this.data.length} bytes`, this.data.length)
  }

  private step (op: number): void {
    switch (op) {
      case OP.PROTO: return this.proto(this.u8())
      case OP.FRAME: return this.frame(this.u64())
      case OP.MARK: this.marks.push(this.stack.length); return
      case OP.POP: return this.popTop()
      case OP.POP_MARK: this.popMark(); return
      case OP.DUP: this.stack.push(this.top()); return
      case OP.NONE: return this.make(null)
      case OP.NEWTRUE: return this.make(true)
      case OP.NEWFALSE: return this.make(false)
      case OP.BININT1: return this.make(this.u8())
      case OP.BININT2: return this.make(this.view.getUint16(this.take(2), true))
      case OP.BININT: return this.make(this.view.getInt32(this.take(4), true))
      case OP.LONG1: return this.make(long(this.bytes(this.u8())))
      case OP.LONG4: return this.make(long(this.bytes(this.i32Length())))
      case OP.BINFLOAT: return this.make(this.view.getFloat64(this.take(8), false))
      case OP.SHORT_BINUNICODE: return this.make(this.text(this.bytes(this.u8())))
      case OP.BINUNICODE: return this.make(this.text(this.bytes(this.u32())))
      case OP.BINUNICODE8: return this.make(this.text(this.bytes(this.u64())))
      case OP.SHORT_BINBYTES: return this.make(Buffer.from(this.bytes(this.u8())))
      case OP.BINBYTES: return this.make(Buffer.from(this.bytes(this.u32())))
      case OP.BINBYTES8: return this.make(Buffer.from(this.bytes(this.u64())))
      case OP.BYTEARRAY8: return this.make(this.bytearray(Buffer.from(this.bytes(this.u64()))))
      case OP.EMPTY_TUPLE: return this.make(this.tuple([]))
      case OP.TUPLE1: return this.make(this.tuple(this.popValues(1)))
      case OP.TUPLE2: return this.make(this.tuple(this.popValues(2)))
      case OP.TUPLE3: return this.make(this.tuple(this.popValues(3)))
      case OP.TUPLE: return this.make(this.tuple(this.popMark().map((i) => this.value(i))))
      case OP.EMPTY_LIST: return this.make([])
      case OP.LIST: return this.make(this.popMark().map((i) => this.value(i)))
      case OP.APPEND: { const v = this.popValue(); this.topList().push(v); return }
      case OP.APPENDS: return this.appends(this.popMark().map((i) => this.value(i)))
      case OP.EMPTY_DICT: return this.make(new PyDict([]))
      case OP.DICT: { const d = new PyDict([]); this.setItems(d, this.popMark()); return this.make(d) }
      case OP.SETITEM: { const [k, v] = this.popValues(2) as [PyValue, PyValue]; this.setItem(this.topDict(), k, v); return }
      case OP.SETITEMS: { const items = this.popMark(); this.setItems(this.topDict(), items); return }
      case OP.BINPUT: return this.put(this.u8())
      case OP.LONG_BINPUT: return this.put(this.u32())
      case OP.MEMOIZE: return this.put(this.memo.size)
      case OP.BINGET: return this.get(this.u8())
      case OP.LONG_BINGET: return this.get(this.u32())
      case OP.GLOBAL: { const module = this.line(); return this.global(module, this.line()) }
      case OP.STACK_GLOBAL: return this.stackGlobal()
      case OP.REDUCE: return this.reduce()
      case OP.NEWOBJ: return this.newobj(false)
      case OP.NEWOBJ_EX: return this.newobj(true)
      case OP.BUILD: return this.build()
      default: return this.refuse(op)
    }
  }

  /** Opcodes that would name or run code, then the ones no Python 3 pickler emits at protocols 2-5. */
  private refuse (op: number): never {
    switch (op) {
      case OP.INST: { const module = this.line(); throw this.refused(`${module}.${this.line()}`, 'INST calls a class') }
      case OP.OBJ: {
        const cls = this.popMark()[0]
        if (cls instanceof Global) throw this.refused(cls.name, 'OBJ calls a class')
        throw this.invalid('OBJ without a class')
      }
      case OP.EXT1: throw this.refused(`copyreg extension ${this.u8()}`, 'extension codes name globals')
      case OP.EXT2: throw this.refused(`copyreg extension ${this.view.getUint16(this.take(2), true)}`, 'extension codes name globals')
      case OP.EXT4: throw this.refused(`copyreg extension ${this.view.getInt32(this.take(4), true)}`, 'extension codes name globals')
      case OP.PERSID: case OP.BINPERSID: throw this.refused('persistent_load', 'persistent ids are looked up by code')
      case OP.EMPTY_SET: case OP.ADDITEMS: throw this.refused('builtins.set', 'sets are not allowed')
      case OP.FROZENSET: throw this.refused('builtins.frozenset', 'sets are not allowed')
    }
    const name: string | undefined = OP[op]
    throw this.invalid(name === undefined ? `unknown opcode 0x${op.toString(16).padStart(2, '0')}` : `unsupported opcode ${name}`)
  }

  private stop (): PyValue {
    const result = this.popValue()
    if (this.stack.length > 0 || this.marks.length > 0) throw this.invalid('STOP leaves values or marks on the stack')
    if (this.pos !== this.data.length) throw this.invalid(`${this.data.length - this.pos} trailing bytes after STOP`, this.pos)
    if (this.fresh.size > 0) throw this.invalid('a SharedMemoryNumpyObject never got its state (no BUILD)')
    this.allowance.expanded = checkShape(result, this.allowance, (why) => this.invalid(why))
    return result
  }

  /**
   * Python's unframer: a FRAME may only start where the previous one ended, and no opcode may run past the end of
   * its frame. CPython reads misaligned frames inconsistently; refusing them keeps us reading what it reads.
   */
  private frame (length: number): void {
    if (this.frameEnd >= 0 && this.pos !== this.frameEnd) throw this.invalid('a FRAME starts inside another')
    this.frameEnd = this.pos + length
  }

  private framed (end: number): void {
    if (this.frameEnd < 0) return
    if (this.pos === this.frameEnd) this.frameEnd = -1
    else if (end > this.frameEnd) throw this.invalid('an opcode runs past the end of its FRAME')
  }

  private proto (version: number): void {
    if (version > 5) throw this.invalid(`unsupported protocol ${version}`)
  }

  // --- reading the input; every length is checked against what is left before anything is allocated

  private take (n: number): number {
    const left = this.data.length - this.pos
    if (n > left) throw this.invalid(`truncated: ${OP[this.data[this.at] ?? 0] ?? 'opcode'} wants ${n} bytes, ${left} left`)
    this.framed(this.pos + n)
    const start = this.pos
    this.pos += n
    return start
  }

  private bytes (n: number): Uint8Array {
    const start = this.take(n)
    return this.data.subarray(start, start + n)
  }

  private u8 (): number { return this.view.getUint8(this.take(1)) }
  private u32 (): number { return this.view.getUint32(this.take(4), true) }

  private i32Length (): number {
    const n = this.view.getInt32(this.take(4), true)
    if (n < 0) throw this.invalid(`negative length ${n}`)
    return n
  }

  private u64 (): number {
    const n = this.view.getBigUint64(this.take(8), true)
    if (n > BigInt(this.data.length - this.pos)) throw this.invalid(`truncated: a length of ${n} bytes runs past the end of the input`)
    return Number(n)
  }

  private line (): string {
    const end = this.data.indexOf(0x0a, this.pos)
    if (end < 0) throw this.invalid('truncated: no newline after a GLOBAL or INST name')
    this.framed(end + 1)
    const start = this.pos
    this.pos = end + 1
    return this.text(this.data.subarray(start, end))
  }

  /** Fatal decoding also rejects encoded surrogates, which Python writes with 'surrogatepass'. */
  private text (bytes: Uint8Array): string {
    try {
      return utf8.decode(bytes)
    } catch {
      throw this.invalid('invalid UTF-8 in a str')
    }
  }

  // --- the stack

  private make (v: Item): void {
    if (++this.created > this.allowance.items) throw this.invalid(`more than ${this.limits.maxItems} values${this.allowance.shared} (maxItems)`)
    this.stack.push(v)
  }

  private top (): Item {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) throw this.invalid('stack underflow')
    return this.stack[this.stack.length - 1] as Item
  }

  private pop (): Item {
    const item = this.top()
    this.stack.pop()
    return item
  }

  /** CPython's POP drops an empty MARK when nothing sits above it. */
  private popTop (): void {
    if (this.marks.at(-1) === this.stack.length) this.marks.pop()
    else this.pop()
  }

  private popMark (): Item[] {
    const mark = this.marks.pop()
    if (mark === undefined) throw this.invalid('no MARK to pop to')
    return this.stack.splice(mark)
  }

  /** A global is only ever an argument to the opcode that calls it, never data. */
  private value (item: Item): PyValue {
    if (item instanceof Global) throw this.refused(item.name, 'a class or function is not a value')
    return item
  }

  private popValue (): PyValue { return this.value(this.pop()) }

  private popValues (n: number): PyValue[] {
    const items: PyValue[] = []
    for (let i = 0; i < n; i++) items.unshift(this.popValue())
    return items
  }

  private topList (): PyValue[] {
    const list = this.top()
    if (!Array.isArray(list)) throw this.invalid('APPEND to something that is not a list')
    return list
  }

  /** One at a time: spreading a batch of a million DUPs into push() would overflow the call stack. */
  private appends (values: PyValue[]): void {
    const list = this.topList()
    for (const v of values) list.push(v)
  }

  private topDict (): PyDict {
    const dict = this.top()
    if (!(dict instanceof PyDict)) throw this.invalid('SETITEM on something that is not a dict')
    return dict
  }

  // --- values

  private tuple (items: PyValue[]): PyTuple {
    const t = new PyTuple(items)
    this.keys.noteTuple(t)
    return t
  }

  private bytearray (b: Buffer): Buffer {
    this.keys.bytearrays.add(b)
    return b
  }

  private setItems (dict: PyDict, items: Item[]): void {
    if (items.length % 2 !== 0) throw this.invalid('SETITEMS with a key and no value')
    for (let i = 0; i < items.length; i += 2) this.setItem(dict, this.value(items[i] as Item), this.value(items[i + 1] as Item))
  }

  private setItem (dict: PyDict, k: PyValue, v: PyValue): void {
    const key = this.keys.of(k)
    if (key === undefined) throw this.invalid(`unhashable dict key (${describe(k)})`)
    const index = this.keys.index(dict)
    const at = index.get(key)
    const entry = at === undefined ? undefined : dict.entries[at]
    if (entry !== undefined) {
      entry[1] = v
    } else {
      index.set(key, dict.entries.length)
      dict.entries.push([k, v])
    }
  }

  /** Picklers number memo entries from 0 up; CPython's memo is an array, so a far index would be a huge allocation there. */
  private put (index: number): void {
    const item = this.top()
    if (index >= this.limits.maxMemo) throw this.invalid(`memo index ${index} is beyond the ${this.limits.maxMemo} entries allowed (maxMemo)`)
    this.memo.set(index, item)
  }

  private get (index: number): void {
    const item = this.memo.get(index)
    if (item === undefined) throw this.invalid(`memo index ${index} was never stored`)
    this.stack.push(item)
  }

  // --- globals and the calls allowed on them

  private refused (global: string, why?: string): PickleRefused {
    return new PickleRefused(global, this.at, why)
  }

  private global (module: string, name: string): void {
    const callable = allowed.get(module)?.get(name)
    if (callable === undefined) throw this.refused(`${module}.${name}`)
    this.make(new Global(`${module}.${name}`, callable))
  }

  private stackGlobal (): void {
    const name = this.pop()
    const module = this.pop()
    if (typeof module !== 'string' || typeof name !== 'string') throw this.invalid('STACK_GLOBAL needs two str')
    this.global(module, name)
  }

  private reduce (): void {
    const args = this.pop()
    const fn = this.pop()
    if (!(fn instanceof Global)) throw this.invalid('REDUCE of something that is not a global')
    if (!(args instanceof PyTuple)) throw this.invalid(`REDUCE of ${fn.name} with arguments that are not a tuple`)
    this.make(this.call(fn, args.items))
  }

  /** Exactly the calls CPython's pickler writes for bytes and bytearray at protocols 2-4. */
  private call (fn: Global, args: PyValue[]): Buffer {
    const [first, second] = args
    switch (fn.callable) {
      case 'shm': throw this.refused(fn.name, 'only NEWOBJ with no arguments may create it')
      case 'encode':
        if (args.length === 2 && typeof first === 'string' && second === 'latin1') return this.latin1(first)
        break
      case 'bytes':
        if (args.length === 0) return Buffer.alloc(0)
        break
      case 'bytearray':
        if (args.length === 0) return this.bytearray(Buffer.alloc(0))
        // A second view rather than a copy: a memoized argument reused a million times must not cost a million copies.
        if (args.length === 1 && Buffer.isBuffer(first)) return this.bytearray(Buffer.from(first.buffer, first.byteOffset, first.length))
        break
    }
    throw this.invalid(`${fn.name} called with arguments a pickler never writes`)
  }

  /** Each call copies its (possibly memoized) str, so what the calls produce is held to maxBytes in total. */
  private latin1 (text: string): Buffer {
    this.encoded += text.length
    if (this.encoded > this.allowance.bytes) throw this.invalid(`_codecs.encode produced more than ${this.limits.maxBytes} bytes${this.allowance.shared} (maxBytes)`)
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) > 0xff) throw this.invalid('_codecs.encode of a str that is not latin-1')
    }
    return Buffer.from(text, 'latin1')
  }

  private newobj (withKwargs: boolean): void {
    const kwargs = withKwargs ? this.pop() : new PyDict([])
    const args = this.pop()
    const cls = this.pop()
    if (!(cls instanceof Global)) throw this.invalid('NEWOBJ of something that is not a class')
    if (cls.callable !== 'shm') throw this.refused(cls.name, 'NEWOBJ may only create nos.common.shm.SharedMemoryNumpyObject')
    if (!(args instanceof PyTuple) || args.items.length > 0 || !(kwargs instanceof PyDict) || kwargs.entries.length > 0) {
      throw this.invalid(`NEWOBJ of ${cls.name} with arguments (its state comes from BUILD)`)
    }
    const obj = new ShmObject(null)
    this.fresh.add(obj)
    this.make(obj)
  }

  private build (): void {
    const state = this.popValue()
    const obj = this.top()
    if (!(obj instanceof ShmObject) || !this.fresh.delete(obj)) throw this.invalid('BUILD on something that is not a new SharedMemoryNumpyObject')
    const target: { state: PyValue } = obj
    target.state = state
  }

  private invalid (what: string, at = this.at): PickleInvalid {
    return new PickleInvalid(`pickle: ${what} at byte ${at}`)
  }
}

/** Two's complement, little-endian, as LONG1 and LONG4 carry it. */
function long (bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0
  let n = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`)
  if (((bytes[bytes.length - 1] ?? 0) & 0x80) !== 0) n -= 1n << BigInt(bytes.length * 8)
  const small = Number(n)
  return Number.isSafeInteger(small) ? small : n
}

function describe (v: PyValue): string {
  if (Array.isArray(v)) return 'list'
  if (v instanceof PyDict) return 'dict'
  if (v instanceof PyTuple) return 'tuple holding an unhashable value'
  if (v instanceof ShmObject) return 'SharedMemoryNumpyObject'
  return 'bytearray' // the one unhashable leaf
}

function childrenOf (v: PyValue): PyValue[] | undefined {
  if (Array.isArray(v)) return v
  if (v instanceof PyTuple) return v.items
  if (v instanceof PyDict) return v.entries.flatMap(([key, value]) => [key, value])
  if (v instanceof ShmObject) return [v.state]
  return undefined
}

/**
 * Memo references make the result a graph: refuse cycles, bound nesting, and bound the number of values a
 * consumer walking it as a tree would meet (sharing can otherwise expand exponentially).
 */
function checkShape (root: PyValue, { limits, items, shared }: Allowance, invalid: (why: string) => PickleInvalid): number {
  const done = new Map<object, { height: number, size: number }>()
  const open = new Set<object>()
  const tooDeep = (): PickleInvalid => invalid(`containers nested deeper than ${limits.maxDepth} (maxDepth)`)
  const visit = (v: PyValue, depth: number): { height: number, size: number } => {
    const children = childrenOf(v)
    if (children === undefined || v === null || typeof v !== 'object') return { height: 0, size: 1 }
    const known = done.get(v)
    if (known !== undefined) {
      if (depth + known.height - 1 > limits.maxDepth) throw tooDeep()
      return known
    }
    if (open.has(v)) throw invalid('a container contains itself')
    if (depth > limits.maxDepth) throw tooDeep()
    open.add(v)
    let height = 0
    let size = 1
    for (const child of children) {
      const sub = visit(child, depth + 1)
      height = Math.max(height, sub.height)
      size += sub.size
    }
    if (size > items) throw invalid(`more than ${limits.maxItems} values${shared} once shared references are expanded (maxItems)`)
    open.delete(v)
    const result = { height: height + 1, size }
    done.set(v, result)
    return result
  }
  return visit(root, 1).size
}
