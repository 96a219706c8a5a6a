import { Readable } from 'node:stream'
import { readRange } from '../../native/io.js'
import { BigIntText, type DescriptorRef, type Entry, type JsonValue } from '../codecs/descriptors.js'
import { parseDtype } from '../codecs/dtype.js'
import { errors } from '../errors.js'
import type { Caller } from '../segments/caller.js'
import { checkClaim } from '../segments/spec.js'
import { npzSize, npzStream, type NpzEntry } from '../codecs/npz.js'
import type { SegmentRecord } from '../segments/registry.js'
import type { Handle, SegmentService } from '../segments/service.js'

export const JSON_TYPE = 'application/json'
export const NPZ_TYPE = 'application/x-npz'
/** The NPZ member that carries the dict's non-tensor values, as UTF-8 JSON in a uint8 array. */
export const PASSTHROUGH_MEMBER = '__passthrough__'
const NPZ_KEY = /^[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}$/

type Resolved = { key: string, kind: 'tensor', handle: Handle } | { key: string, kind: 'tensors', handles: Handle[] } | { key: string, kind: 'value', value: JsonValue }

export interface Decoded { type: string, length?: number, body: Readable, tensors: number, bytes: number }

/**
 * Checks every descriptor against the registry and opens every segment before the first byte goes out,
 * so that the answer is all or nothing and a release during the stream cannot pull the data away.
 */
export function decode (service: SegmentService, entries: Entry[], type: string, caller: Caller, maxBytes = Infinity): Decoded {
  const records = new Map<string, SegmentRecord>()
  const resolve = (ref: DescriptorRef): SegmentRecord => {
    const record = check(service, ref, caller)
    records.set(record.name, record)
    return record
  }
  const planned = entries.map((e) => e.kind === 'tensor'
    ? { ...e, record: resolve(e.ref) }
    : e.kind === 'tensors' ? { ...e, records: e.refs.map(resolve) } : e)
  // One fd per segment however often it is named: the writers read with pread from offset 0, so they can share it.
  const handles = new Map<string, Handle>()
  const closeAll = () => { for (const h of handles.values()) h.close() }
  try {
    for (const [name, record] of records) handles.set(name, service.open(record, false))
  } catch (err) {
    closeAll()
    throw err
  }
  const handleOf = ({ name }: SegmentRecord): Handle => {
    const handle = handles.get(name)
    if (handle === undefined) throw new Error(`decode: segment "${name}" was resolved but not opened`)
    return handle
  }
  let tensors = 0
  let bytes = 0
  try {
    const resolved = planned.map((p): Resolved => {
      if (p.kind === 'value') return p
      const all = p.kind === 'tensor' ? [p.record] : p.records
      tensors += all.length
      for (const r of all) bytes += r.nbytes
      return p.kind === 'tensor' ? { key: p.key, kind: 'tensor', handle: handleOf(p.record) } : { key: p.key, kind: 'tensors', handles: p.records.map(handleOf) }
    })
    // Naming one segment thousands of times costs a few bytes of request and its whole size each time in the answer.
    if (bytes > maxBytes) throw new errors.LimitExceeded(`tensors: the answer would carry ${bytes} bytes of tensor data (a segment named k times counts k times), over TENSORSHM_MAX_DECODE_BYTES (${maxBytes})`)
    const out = type === NPZ_TYPE ? toNpz(resolved) : { type: JSON_TYPE, body: Readable.from(jsonChunks(resolved)) }
    out.body.once('close', closeAll)
    return { ...out, tensors, bytes }
  } catch (err) {
    closeAll()
    throw err
  }
}

function check (service: SegmentService, ref: DescriptorRef, caller: Caller) {
  const record = service.find(ref.name, caller, `${ref.field}.name`)
  checkClaim(record, ref, ref.field)
  return record
}

function toNpz (resolved: Resolved[]): { type: string, length: number, body: Readable } {
  const members: NpzEntry[] = []
  // Keys are the client's: `__proto__` must stay an ordinary key.
  const passthrough: Record<string, JsonValue> = Object.create(null) as Record<string, JsonValue>
  const member = (name: string, h: Handle): NpzEntry => ({
    name, dtype: h.record.dtype, shape: h.record.shape, nbytes: h.record.nbytes, open: () => readRange(h.fd, 0, h.record.nbytes)
  })
  for (const r of resolved) {
    if (r.kind === 'value') { passthrough[r.key] = r.value; continue }
    if (!NPZ_KEY.test(r.key) || r.key === PASSTHROUGH_MEMBER) throw new errors.InvalidDescriptor(`${r.key}: a tensor key must match ${NPZ_KEY.source} (and not be ${PASSTHROUGH_MEMBER}) to name an NPZ member`)
    if (r.kind === 'tensor') members.push(member(r.key, r.handle))
    else r.handles.forEach((h, i) => members.push(member(`${r.key}.${i}`, h)))
  }
  const json = Buffer.from(stringify(passthrough))
  const uint8 = parseDtype('uint8')
  if (uint8 === undefined) throw new Error('uint8 must parse')
  members.push({ name: PASSTHROUGH_MEMBER, dtype: uint8, shape: [json.length], nbytes: json.length, open: () => [json] })
  return { type: NPZ_TYPE, length: npzSize(members), body: npzStream(members) }
}

async function * jsonChunks (resolved: Resolved[]): AsyncGenerator<string> {
  const tensor = async function * (h: Handle): AsyncGenerator<string> {
    const { shape, dtype, nbytes } = h.record
    yield `{"shape":${JSON.stringify(shape)},"dtype":${JSON.stringify(dtype.name)},"data":"`
    // Chunks are multiples of 3 bytes, so their base64 concatenates into the base64 of the whole.
    for await (const chunk of readRange(h.fd, 0, nbytes)) yield chunk.toString('base64')
    yield '"}'
  }
  let sep = '{'
  for (const r of resolved) {
    yield `${sep}${JSON.stringify(r.key)}:`
    sep = ','
    if (r.kind === 'value') yield stringify(r.value)
    else if (r.kind === 'tensor') yield * tensor(r.handle)
    else {
      for (const [i, h] of r.handles.entries()) { yield i === 0 ? '[' : ','; yield * tensor(h) }
      yield ']'
    }
  }
  yield sep === '{' ? '{}' : '}'
}

/** JSON.stringify, except that integers past 2^53 keep every digit. Depth is bounded by the dict limits. */
export function stringify (v: JsonValue): string {
  if (v instanceof BigIntText) return v.digits
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`
  return JSON.stringify(v)
}
