import { CodecError } from './codec-error.js'
import { PickleInvalid, PyDict, PyTuple, ShmObject, looksLikePickle, parsePickle, type PickleBudget, type PyValue } from './pickle.js'

/** What a descriptor dict says about one tensor, before anything is checked against the registry. */
export interface DescriptorRef { field: string, name: string, shape: number[], dtype: string, nbytes?: number }

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue } | BigIntText

/** An integer too large for a double, written into JSON digit for digit. */
export class BigIntText { constructor (readonly digits: string) {} }

export type Entry =
  | { key: string, kind: 'tensor', ref: DescriptorRef }
  | { key: string, kind: 'tensors', refs: DescriptorRef[] }
  | { key: string, kind: 'value', value: JsonValue }

export interface DictLimits { maxKeys: number, maxListLength: number, maxDepth: number, maxBytes: number, maxDescriptors: number }

/** A JSON descriptor dict: `{key: {name, shape, dtype} | [{...}, ...] | anything}`. */
export function entriesFromJson (body: unknown, limits: DictLimits): Entry[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new CodecError('InvalidDescriptor', 'body: a descriptor dict must be a JSON object')
  const keys = Object.keys(body)
  checkCount('body', keys.length, limits.maxKeys, 'keys')
  const budget = new Budget(limits)
  return keys.map((key) => classify(key, (body as Record<string, unknown>)[key], budget, fromJsonDescriptor, (v) => jsonValue(v, key, 1, limits)))
}

/** A pickled descriptor dict, or NOS's dict of per-key pickles; nothing in it is executed. */
export function entriesFromPickle (data: Buffer, limits: DictLimits): Entry[] {
  const budget = new Budget(limits)
  const root = unpickle(data, 'body', budget)
  if (!(root instanceof PyDict)) throw new CodecError('InvalidDescriptor', 'body: the pickle must hold a dict')
  checkCount('body', root.entries.length, limits.maxKeys, 'keys')
  return root.entries.map(([k, raw]) => {
    if (typeof k !== 'string') throw new CodecError('InvalidDescriptor', 'body: descriptor dict keys must be str')
    const v = raw instanceof Buffer && looksLikePickle(raw) ? unpickle(raw, k, budget) : raw
    return classify(k, v, budget, (x, field) => x instanceof ShmObject ? fromShmState(x.state, field) : undefined, (x) => pyToJson(x, k, 1, budget))
  })
}

/**
 * What one request may expand into, whatever its form: one pickle budget for the outer pickle and every per-key
 * pickle in it, one for the passthrough values written out, and one count of descriptors over all keys.
 */
class Budget {
  readonly pickle: PickleBudget = { items: 0, bytes: 0 }
  /**
   * Bytes of passthrough JSON left. A value the pickle stores once and references many times (its memo) is written
   * out at every reference, so output is counted against a multiple of the body limit, not the body's size.
   */
  left: number
  private descriptors = 0

  constructor (readonly limits: DictLimits) {
    this.left = 4 * limits.maxBytes
  }

  /** Counted as each is found, so that a million references are refused at the first one past the cap. */
  found (field: string): void {
    if (++this.descriptors > this.limits.maxDescriptors) {
      throw new CodecError('LimitExceeded', `${field}: more than ${this.limits.maxDescriptors} descriptors in one request (TENSORSHM_MAX_DESCRIPTORS)`)
    }
  }
}

type AsRef = (value: unknown, field: string) => DescriptorRef | undefined

function classify (key: string, value: unknown, budget: Budget, asRef: AsRef, passthrough: (v: unknown) => JsonValue): Entry {
  const { limits } = budget
  const counted: AsRef = (v, field) => {
    const ref = asRef(v, field)
    if (ref !== undefined) budget.found(field)
    return ref
  }
  const ref = counted(value, key)
  if (ref !== undefined) return { key, kind: 'tensor', ref }
  const items = Array.isArray(value) ? value : value instanceof PyTuple ? value.items : undefined
  if (items !== undefined && items.length > 0) {
    const refs = items.map((item, i) => counted(item, `${key}[${i}]`))
    if (refs.every((r) => r !== undefined)) {
      checkCount(key, refs.length, limits.maxListLength, 'items')
      return { key, kind: 'tensors', refs: refs as DescriptorRef[] }
    }
    if (refs.some((r) => r !== undefined)) throw new CodecError('InvalidDescriptor', `${key}: a list mixes descriptors with other values`)
  }
  return { key, kind: 'value', value: passthrough(value) }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

function fromJsonDescriptor (value: unknown, field: string): DescriptorRef | undefined {
  if (!isObject(value) || !('name' in value) || !('shape' in value) || !('dtype' in value)) return undefined
  return checkRef(field, value.name, value.shape, value.dtype, value.nbytes)
}

function fromShmState (state: PyValue, field: string): DescriptorRef {
  if (!(state instanceof PyDict)) throw new CodecError('InvalidDescriptor', `${field}: a SharedMemoryNumpyObject's state must be a dict`)
  const get = (k: string) => state.entries.find(([key]) => key === k)?.[1]
  const shape = get('shape')
  return checkRef(field, get('name'), shape instanceof PyTuple ? shape.items : shape, get('dtype'), undefined)
}

function checkRef (field: string, name: unknown, shape: unknown, dtype: unknown, nbytes: unknown): DescriptorRef {
  if (typeof name !== 'string') throw new CodecError('InvalidDescriptor', `${field}.name must be a string`)
  if (typeof dtype !== 'string') throw new CodecError('InvalidDescriptor', `${field}.dtype must be a string`)
  if (!Array.isArray(shape)) throw new CodecError('InvalidDescriptor', `${field}.shape must be a list of integers`)
  shape.forEach((d, i) => { if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw new CodecError('InvalidDescriptor', `${field}.shape[${i}] must be a non-negative integer`) })
  if (nbytes !== undefined && (typeof nbytes !== 'number' || !Number.isSafeInteger(nbytes))) throw new CodecError('InvalidDescriptor', `${field}.nbytes must be an integer`)
  return { field, name, shape: shape as number[], dtype, ...(nbytes === undefined ? {} : { nbytes: nbytes as number }) }
}

function checkCount (field: string, n: number, max: number, what: string): void {
  if (n > max) throw new CodecError('LimitExceeded', `${field}: ${n} ${what}, at most ${max} are allowed`)
}

function checkDepth (field: string, depth: number, limits: DictLimits): void {
  if (depth > limits.maxDepth) throw new CodecError('LimitExceeded', `${field}: nested deeper than ${limits.maxDepth} levels`)
}

function jsonValue (v: unknown, field: string, depth: number, limits: DictLimits): JsonValue {
  if (Array.isArray(v)) {
    checkDepth(field, depth, limits)
    checkCount(field, v.length, limits.maxListLength, 'items')
    return v.map((x, i) => jsonValue(x, `${field}[${i}]`, depth + 1, limits))
  }
  if (isObject(v)) {
    checkDepth(field, depth, limits)
    const keys = Object.keys(v)
    checkCount(field, keys.length, limits.maxKeys, 'keys')
    return Object.fromEntries(keys.map((k) => [k, jsonValue(v[k], `${field}.${k}`, depth + 1, limits)]))
  }
  return v as JsonValue
}

/** Integers past this many bits are refused: their decimal form is quadratic to compute and meaningless here. */
const MAX_INT_BITS = 16384

function spend (budget: Budget, field: string, bytes: number): void {
  budget.left -= bytes
  if (budget.left < 0) throw new CodecError('LimitExceeded', `${field}: the pickle expands past ${4 * budget.limits.maxBytes} bytes (shared references are written out at every use)`)
}

/** Python values as Python's json module would write them; bytes become {"__bytes__": base64}. */
function pyToJson (v: unknown, field: string, depth: number, budget: Budget): JsonValue {
  const { limits } = budget
  spend(budget, field, 8)
  if (v === null || typeof v === 'boolean') return v
  if (typeof v === 'string') { spend(budget, field, v.length); return v }
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v)
  if (typeof v === 'bigint') {
    const hex = v.toString(16).length
    if (hex * 4 > MAX_INT_BITS) throw new CodecError('LimitExceeded', `${field}: an integer of more than ${MAX_INT_BITS} bits`)
    spend(budget, field, hex * 2)
    return new BigIntText(v.toString())
  }
  if (v instanceof Buffer) { spend(budget, field, v.length * 4 / 3); return { __bytes__: v.toString('base64') } }
  if (v instanceof ShmObject) return pyToJson(v.state, field, depth, budget)
  checkDepth(field, depth, limits)
  const items = Array.isArray(v) ? v : v instanceof PyTuple ? v.items : undefined
  if (items !== undefined) {
    checkCount(field, items.length, limits.maxListLength, 'items')
    return items.map((x, i) => pyToJson(x, `${field}[${i}]`, depth + 1, budget))
  }
  if (v instanceof PyDict) {
    checkCount(field, v.entries.length, limits.maxKeys, 'keys')
    // fromEntries defines own properties: a key named `__proto__` stays a key instead of becoming a prototype.
    return Object.fromEntries(v.entries.map(([k, x]) => {
      const name = typeof k === 'string' ? k : k === null ? 'null' : typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean' ? String(k) : undefined
      if (name === undefined) throw new CodecError('InvalidDescriptor', `${field}: dict keys must be str, int, float, bool or None`)
      return [name, pyToJson(x, `${field}.${name}`, depth + 1, budget)]
    }))
  }
  throw new CodecError('InvalidDescriptor', `${field}: a value of an unsupported type`)
}

/**
 * Every pickle of the request spends the one budget. A per-key body carries its pickles inside the outer one, so an
 * honest body is read at most twice over: hence twice the body limit.
 */
function unpickle (data: Buffer, field: string, { limits, pickle }: Budget): PyValue {
  try {
    return parsePickle(data, { maxBytes: 2 * limits.maxBytes, maxDepth: limits.maxDepth + 2, budget: pickle })
  } catch (err) {
    if (err instanceof PickleInvalid && err.limit === 'maxDepth') throw new CodecError('LimitExceeded', `${field}: nested deeper than ${limits.maxDepth} levels`)
    if (err instanceof CodecError) throw new CodecError(err.kind, `${field}: ${err.message}`)
    throw err
  }
}
