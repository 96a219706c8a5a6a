import type { Identity } from '../../native/shm.js'
import { parseDtype } from '../codecs/dtype.js'
import { MAX_TTL } from '../segments/lease.js'
import { isFileAccess } from '../segments/access.js'
import { isProcessRef } from '../segments/exit-watch.js'
import { isSegmentName } from '../segments/names.js'
import { isKey, isNamespace } from '../segments/namespace.js'
import type { SegmentRecord } from '../segments/registry.js'
import { checkSpec, MAX_NDIM } from '../segments/spec.js'

/** A record as the journal keeps it: plain JSON (bigints as decimal strings, the dtype by name). */
export interface Stored extends Omit<SegmentRecord, 'dtype' | 'ino' | 'dev'> { dtype: string, ino: string, dev: string }

/**
 * A file that is ours but no live segment (released, pooled, being created): recovery unlinks it if it is still
 * ours. `uid` is its owner when it was given to a local caller (the service's own otherwise).
 */
export interface StoredLimbo { names: string[], ino?: string, dev?: string, uid?: number }

export type Op =
  | { op: 'intent', names: string[] }
  | { op: 'create', records: Stored[] }
  | { op: 'release', names: string[], moves?: Record<string, string> }
  | { op: 'move', from: string, to: string }
  | { op: 'forget', names: string[] }
  | { op: 'renew', namespace: string, owner: string | null, ttl: number | null, at: number }
  | { op: 'own', namespace: string, owner: string }
  | { op: 'disown', namespace: string }
  | { op: 'limbo', entries: StoredLimbo[] }

/** A released record's file as recovery must find it: its inode, and its owner when a local caller's. */
export const ownedBy = (r: SegmentRecord): Identity => r.file === undefined ? { ino: r.ino, dev: r.dev } : { ino: r.ino, dev: r.dev, uid: r.file.uid }

/** A record as stored, field by field in record order: what `createLine` writes for each (a test holds the two together). */
export function store (r: SegmentRecord): Stored {
  const s: Stored = { name: r.name, namespace: r.namespace, key: r.key, index: r.index, shape: r.shape, dtype: r.dtype.name, nbytes: r.nbytes, size: r.size, ino: r.ino.toString(), dev: r.dev.toString(), createdAt: r.createdAt, ttl: r.ttl, expiresAt: r.expiresAt, owner: r.owner }
  if (r.file !== undefined) s.file = r.file
  if (r.boundTo !== undefined) s.boundTo = r.boundTo
  return s
}

const json = JSON.stringify

/** The fields after `dev`, which the records of one create share: written once per line, not once per record. */
const tailOf = (r: SegmentRecord): string =>
  `"createdAt":${r.createdAt},"ttl":${r.ttl},"expiresAt":${r.expiresAt},"owner":${json(r.owner)}` +
  (r.file === undefined ? '' : `,"file":${json(r.file)}`) + (r.boundTo === undefined ? '' : `,"boundTo":${json(r.boundTo)}`) + '}'

const sameTail = (a: SegmentRecord, b: SegmentRecord): boolean =>
  a.createdAt === b.createdAt && a.ttl === b.ttl && a.expiresAt === b.expiresAt && a.owner === b.owner && a.file === b.file && a.boundTo === b.boundTo

/**
 * The create op's line, byte for byte what `JSON.stringify({ op: 'create', records: records.map(store) })` writes
 * (a test holds it to that), at about half the cost: what the records of one create share is serialised once.
 */
export function createLine (records: SegmentRecord[]): string {
  let out = '{"op":"create","records":['
  let namespace = ''
  let namespaceJson = ''
  let tailFrom: SegmentRecord | undefined
  let tail = ''
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as SegmentRecord
    if (i === 0 || r.namespace !== namespace) { namespace = r.namespace; namespaceJson = json(namespace) }
    if (tailFrom === undefined || !sameTail(r, tailFrom)) { tailFrom = r; tail = tailOf(r) }
    out += `${i === 0 ? '' : ','}{"name":${json(r.name)},"namespace":${namespaceJson},"key":${json(r.key)},"index":${r.index},"shape":[${r.shape.join(',')}],"dtype":${json(r.dtype.name)},"nbytes":${r.nbytes},"size":${r.size},"ino":"${r.ino}","dev":"${r.dev}",${tail}`
  }
  return out + ']}'
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isDigits = (v: unknown): v is string => typeof v === 'string' && /^[0-9]{1,20}$/.test(v)
/** Key ids today (`key-<16 hex>`); room for other caller ids, never free text. */
export const isOwner = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9:_-]{1,64}$/.test(v)

/**
 * A stored record back, or undefined if any field is not one this service could have written: a name outside
 * this prefix, an inode that is not a number, a spec whose size does not add up. The journal is ours, but a
 * record that does not check out is skipped, never trusted and never fatal.
 */
export function loadRecord (s: unknown, prefix: string): SegmentRecord | undefined {
  if (!isObject(s)) return undefined
  const { name, namespace, key, index, shape, dtype, nbytes, size, ino, dev, createdAt, ttl, expiresAt, owner, file, boundTo } = s
  if (!isSegmentName(name, prefix) || !isNamespace(namespace) || !isKey(key)) return undefined
  if (!(index === null || isCount(index)) || !isDigits(ino) || !isDigits(dev)) return undefined
  if (!isTime(createdAt) || !isCount(ttl) || ttl > MAX_TTL || !(expiresAt === null || isTime(expiresAt))) return undefined
  if (!(owner === null || isOwner(owner)) || typeof dtype !== 'string' || parseDtype(dtype) === undefined) return undefined
  if (!Array.isArray(shape) || shape.length > MAX_NDIM || !shape.every(isCount)) return undefined
  if ((file !== undefined && !isFileAccess(file)) || (boundTo !== undefined && !isProcessRef(boundTo))) return undefined
  let spec
  try {
    spec = checkSpec({ shape, dtype }, 'journal', Number.MAX_SAFE_INTEGER)
  } catch {
    return undefined
  }
  if (nbytes !== spec.nbytes || size !== Math.max(spec.nbytes, 1)) return undefined
  const record: SegmentRecord = { name, namespace, key, index, shape: spec.shape, dtype: spec.dtype, nbytes, size, ino: BigInt(ino), dev: BigInt(dev), createdAt, ttl, expiresAt, owner }
  if (file !== undefined) record.file = { uid: file.uid, gid: file.gid, mode: file.mode }
  if (boundTo !== undefined) record.boundTo = { pid: boundTo.pid, start: boundTo.start }
  return record
}

export function loadLimbo (e: unknown, prefix: string): StoredLimbo | undefined {
  if (!isObject(e) || !Array.isArray(e.names) || !e.names.every((n) => isSegmentName(n, prefix))) return undefined
  if (e.ino === undefined && e.dev === undefined) return e.uid === undefined ? { names: e.names } : undefined
  if (!isDigits(e.ino) || !isDigits(e.dev)) return undefined
  if (e.uid === undefined) return { names: e.names, ino: e.ino, dev: e.dev }
  return isCount(e.uid) && e.uid <= 0xfffffffe ? { names: e.names, ino: e.ino, dev: e.dev, uid: e.uid } : undefined
}

/** Checks the shape of one journal line; the fields of records and limbo entries are checked one by one later. */
export function isOp (v: unknown, prefix: string): v is Op {
  if (!isObject(v)) return false
  const names = (x: unknown) => Array.isArray(x) && x.every((n) => isSegmentName(n, prefix))
  switch (v.op) {
    case 'intent': case 'forget': return names(v.names)
    case 'release': return names(v.names) && (v.moves === undefined || (isObject(v.moves) && Object.entries(v.moves).every(([a, b]) => isSegmentName(a, prefix) && isSegmentName(b, prefix))))
    case 'move': return isSegmentName(v.from, prefix) && isSegmentName(v.to, prefix)
    case 'create': return Array.isArray(v.records)
    case 'limbo': return Array.isArray(v.entries)
    case 'renew': return isNamespace(v.namespace) && (v.owner === null || isOwner(v.owner)) && (v.ttl === null || (isCount(v.ttl) && v.ttl <= MAX_TTL)) && isTime(v.at)
    case 'own': return isNamespace(v.namespace) && isOwner(v.owner)
    case 'disown': return isNamespace(v.namespace)
    default: return false
  }
}
