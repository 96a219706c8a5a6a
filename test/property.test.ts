import t from 'tap'
import fc from 'fast-check'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { isDeepStrictEqual } from 'node:util'
import { build, checkNoLeftovers, shmFiles, suitePrefix } from './helpers/build.js'
import { liveFiles, registered, unknownFiles } from './helpers/files.js'
import { NOS_STANDIN } from './helpers/nos.js'
import { mutate, mutation } from './helpers/mutate.js'
import { python } from './helpers/python.js'

/*
 * Property-based tests against the real app (in-process, real /dev/shm). Whatever the input, every answer is below
 * 500, every error is a JSON TSHM_* body that repeats its status, a refused request leaves /dev/shm as it found it,
 * and /dev/shm holds exactly the segments the service accounts for. Reference models written here (not imported
 * from src/) say what each answer must be.
 *
 * PROPERTY_SEED=<n> replays a run (fast-check's failure report also prints the seed and the path of the
 * counterexample); PROPERTY_SCALE=<x> multiplies every numRuns.
 */

const SEED = process.env.PROPERTY_SEED === undefined ? Math.floor(Math.random() * 0x7fffffff) : Number(process.env.PROPERTY_SEED)
const SCALE = Number(process.env.PROPERTY_SCALE ?? '1')
const runs = (n: number): { seed: number, numRuns: number } => ({ seed: SEED, numRuns: Math.max(1, Math.round(n * SCALE)) })
t.comment(`fast-check seed ${SEED}: replay with PROPERTY_SEED=${SEED} (PROPERTY_SCALE=${SCALE})`)

type Res = LightMyRequestResponse

const SEGMENT_LIMIT = 64 * 1024
const PREFIXES = { spec: suitePrefix('propspec'), name: suitePrefix('propname'), decode: suitePrefix('propdec'), keys: suitePrefix('propkeys') }
/** Small segments only, and no load shedding: the properties are about answers, not about a busy event loop. */
const envFor = (prefix: string): Record<string, string> =>
  ({ TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_MAX_SEGMENT_BYTES: String(SEGMENT_LIMIT), TENSORSHM_MAX_EVENT_LOOP_DELAY: '0' })

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const fail = (what: string): never => { throw new Error(what) }
const clip = (text: string): string => text.length > 300 ? `${text.slice(0, 300)}...` : text

/** The rules every answer follows. Returns the error body of a 4xx. */
function checkAnswer (res: Res, what: string): Record<string, unknown> | undefined {
  if (res.statusCode >= 500) fail(`${what}: ${res.statusCode} ${clip(res.body)}`)
  if (res.statusCode < 400) return undefined
  let body: unknown
  try {
    body = JSON.parse(res.body)
  } catch {
    return fail(`${what}: a ${res.statusCode} whose body is not JSON: ${clip(res.body)}`)
  }
  if (!isObject(body)) return fail(`${what}: the error body is not an object`)
  if (body.statusCode !== res.statusCode) fail(`${what}: statusCode ${String(body.statusCode)} in a ${res.statusCode}`)
  if (typeof body.code !== 'string' || !/^TSHM_[A-Z_]+$/.test(body.code)) fail(`${what}: code ${String(body.code)} is not TSHM_*: ${clip(res.body)}`)
  if (typeof body.error !== 'string' || typeof body.message !== 'string') fail(`${what}: error and message must be strings`)
  const message = String(body.message)
  if (message.includes(process.cwd()) || /node_modules|tshm-state-|\.[cm]?[jt]s:\d+|\n\s*at /.test(message)) fail(`${what}: the message leaks a path or a stack: ${message}`)
  return body
}

function expectError (res: Res, status: number, code: string, what: string): void {
  const body = checkAnswer(res, what)
  if (res.statusCode !== status || body?.code !== code) fail(`${what}: expected ${status} ${code}, got ${res.statusCode} ${clip(res.body)}`)
}

/** Every file with the prefix is one the service knows, and every segment it registered is there. */
function checkAccounted (app: FastifyInstance, prefix: string): void {
  const unknown = unknownFiles(app, prefix)
  const files = new Set(shmFiles(prefix))
  const missing = [...registered(app)].filter((f) => !files.has(f))
  if (unknown.length > 0 || missing.length > 0) fail(`/dev/shm and the service disagree: only on disk ${JSON.stringify(unknown)}, only in the service ${JSON.stringify(missing)}`)
}

/** Sends, checks the answer, and when it is a refusal checks that /dev/shm did not change. */
async function send (app: FastifyInstance, prefix: string, options: InjectOptions): Promise<Res> {
  const before = liveFiles(app, prefix)
  const res = await app.inject(options)
  const what = `${String(options.method)} ${String(options.url).slice(0, 120)}`
  checkAnswer(res, what)
  if (res.statusCode >= 400) {
    const after = liveFiles(app, prefix)
    if (!isDeepStrictEqual(before, after)) {
      fail(`${what}: refused with ${res.statusCode}, but /dev/shm changed: gone ${JSON.stringify(before.filter((f) => !after.includes(f)))}, new ${JSON.stringify(after.filter((f) => !before.includes(f)))}`)
    }
  }
  return res
}

// --- a reference model of numpy's dtypes: canonical str(np.dtype(x)) and itemsize, on a little-endian host

type Kind = 'b' | 'i' | 'u' | 'f' | 'c'
const KIND_NAME: Record<Kind, string> = { b: 'bool', i: 'int', u: 'uint', f: 'float', c: 'complex' }
const SIZES: Record<Kind, number[]> = { b: [1], i: [1, 2, 4, 8], u: [1, 2, 4, 8], f: [2, 4, 8], c: [8, 16] }
const canonical = (k: Kind, size: number, big: boolean): string => big && size > 1 ? `>${k}${size}` : k === 'b' ? 'bool' : `${KIND_NAME[k]}${size * 8}`
const NAMED: Array<[string, Kind, number]> = [
  ['bool', 'b', 1], ['bool_', 'b', 1], ['int8', 'i', 1], ['int16', 'i', 2], ['int32', 'i', 4], ['int64', 'i', 8], ['uint8', 'u', 1],
  ['uint16', 'u', 2], ['uint32', 'u', 4], ['uint64', 'u', 8], ['float16', 'f', 2], ['float32', 'f', 4], ['float64', 'f', 8],
  ['complex64', 'c', 8], ['complex128', 'c', 16], ['byte', 'i', 1], ['short', 'i', 2], ['intc', 'i', 4], ['int', 'i', 8], ['int_', 'i', 8],
  ['long', 'i', 8], ['longlong', 'i', 8], ['intp', 'i', 8], ['ubyte', 'u', 1], ['ushort', 'u', 2], ['uintc', 'u', 4], ['uint', 'u', 8],
  ['ulong', 'u', 8], ['ulonglong', 'u', 8], ['uintp', 'u', 8], ['half', 'f', 2], ['single', 'f', 4], ['double', 'f', 8], ['float', 'f', 8],
  ['csingle', 'c', 8], ['cdouble', 'c', 16], ['complex', 'c', 16]
]
const CODES: Array<[string, Kind, number]> = [
  ['?', 'b', 1], ['b', 'i', 1], ['B', 'u', 1], ['h', 'i', 2], ['H', 'u', 2], ['i', 'i', 4], ['I', 'u', 4], ['l', 'i', 8], ['L', 'u', 8],
  ['q', 'i', 8], ['Q', 'u', 8], ['p', 'i', 8], ['P', 'u', 8], ['e', 'f', 2], ['f', 'f', 4], ['d', 'f', 8], ['F', 'c', 8], ['D', 'c', 16]
]
const DTYPES = new Map<string, [string, number]>()
for (const [n, k, s] of NAMED) DTYPES.set(n, [canonical(k, s, false), s])
for (const order of ['', '<', '>', '=', '|']) {
  for (const [c, k, s] of CODES) DTYPES.set(order + c, [canonical(k, s, order === '>'), s])
  for (const k of Object.keys(SIZES) as Kind[]) for (const s of SIZES[k]) DTYPES.set(`${order}${k}${s}`, [canonical(k, s, order === '>'), s])
}
for (const [text, k, s] of [['i04', 'i', 4], ['f004', 'f', 4], ['u01', 'u', 1], ['<c016', 'c', 16]] as Array<[string, Kind, number]>) DTYPES.set(text, [canonical(k, s, false), s])
/** Spellings numpy refuses, or that name a type that is not a plain number of at most 16 bytes. */
const BAD_DTYPES = [
  'U8', '<U8', 'O', '|O', 'V8', '|V8', '<M8[ns]', 'M8', 'm8', 'S1', 'c', 'float128', 'f16', '<f16', 'longdouble', 'g', 'G', 'clongdouble',
  'complex256', 'int128', 'i16', 'u16', 'b2', 'f1', 'i3', '<i3', 'float32 ', ' float32', 'FLOAT32', 'Float32', 'np.float32', 'numpy.float32',
  "[('a','<i4')]", '<f4,<f4', '(2,)f4', 'f4,f4', '2f4', '\uff46\uff14', 'flo\u0430t32', '\u200bfloat32', 'float32\u0000', 'i4\n', 'int0',
  'uint0', 'complex_', 'longfloat', 'singlecomplex', 'cfloat', 'object', 'str', 'bytes', 'datetime64', 'E', 'object_', 'void', 'str_',
  'bytes_', 'unicode', 'Int32', 'Float64', 'float96', '>>f4', '<>f4', '<<f4', 'f4.0', 'i\u0664'
]
const canonicalOf = (text: unknown): string | undefined => typeof text === 'string' ? DTYPES.get(text)?.[0] : undefined

t.test('the dtype model agrees with numpy', async (t) => {
  const disagreements = await python<string[]>(`
import json, sys, warnings
import numpy as np
warnings.simplefilter('ignore')
good, bad = json.load(sys.stdin)
out = []
for text, name, size in good:
    d = np.dtype(text)
    if (str(d), d.itemsize) != (name, size): out.append(f'{text!r}: numpy {d} {d.itemsize}, model {name} {size}')
for text in bad:
    try:
        d = np.dtype(text)
    except Exception:
        continue
    if d.kind in 'biu' or (d.kind == 'f' and d.itemsize <= 8) or (d.kind == 'c' and d.itemsize <= 16):
        out.append(f'{text!r}: numpy reads {d}, the model refuses it')
print(json.dumps(out))`, [[...DTYPES].map(([text, [name, size]]) => [text, name, size]), BAD_DTYPES])
  t.same(disagreements, [], `${DTYPES.size} spellings and ${BAD_DTYPES.length} refusals checked against numpy`)
})

// --- 1. TensorSpec validation

const NS_RE = /^[A-Za-z0-9_.:@=+-]+(\/[A-Za-z0-9_.:@=+-]+)*$/
const KEY_RE = /^[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}$/
const MAX_TTL = 365 * 24 * 3600
const INTP_MAX = 2n ** 63n - 1n
const codePoints = (s: string): number => [...s].length

/** What Fastify's JSON parser (secure-json-parse) refuses: an own __proto__, or an own constructor with an own prototype, at any depth. */
function poisoned (v: unknown): boolean {
  if (Array.isArray(v)) return v.some(poisoned)
  if (!isObject(v)) return false
  if (Object.hasOwn(v, '__proto__')) return true
  const ctor = Object.hasOwn(v, 'constructor') ? v.constructor : undefined
  if (isObject(ctor) && Object.hasOwn(ctor, 'prototype')) return true
  return Object.values(v).some(poisoned)
}

interface Planned { shape: number[], dtype: string, nbytes: bigint }
type CreateWant = { status: 201, tensors: Array<[string, Planned | Planned[]]> } | { status: 400, code: string }

/** The create endpoint as README.md and the OpenAPI document describe it. `body` is what the server parses. */
function modelCreate (body: unknown): CreateWant {
  if (poisoned(body)) return { status: 400, code: 'TSHM_INVALID_JSON' }
  const invalid: CreateWant = { status: 400, code: 'TSHM_INVALID_REQUEST' }
  if (!isObject(body) || Object.keys(body).some((k) => !['namespace', 'ttl_seconds', 'tensors'].includes(k))) return invalid
  const { namespace, tensors, ttl_seconds: ttl } = body
  if (typeof namespace !== 'string' || codePoints(namespace) < 1 || codePoints(namespace) > 256 || !NS_RE.test(namespace)) return invalid
  if (Object.hasOwn(body, 'ttl_seconds') && !(typeof ttl === 'number' && Number.isInteger(ttl) && ttl >= 0 && ttl <= MAX_TTL)) return invalid
  if (!isObject(tensors)) return invalid
  const entries = Object.entries(tensors)
  if (entries.length < 1 || entries.length > 1024) return invalid
  const wellTyped = (s: unknown): s is { shape: number[], dtype: string } => isObject(s) &&
    Object.keys(s).every((k) => k === 'shape' || k === 'dtype') &&
    Array.isArray(s.shape) && s.shape.length <= 32 &&
    s.shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0 && d <= Number.MAX_SAFE_INTEGER) &&
    typeof s.dtype === 'string' && codePoints(s.dtype) >= 1 && codePoints(s.dtype) <= 64
  for (const [key, v] of entries) {
    if (!KEY_RE.test(key)) return invalid
    if (Array.isArray(v) ? v.length < 1 || v.length > 4096 || !v.every(wellTyped) : !wellTyped(v)) return invalid
  }
  const plan = (s: { shape: number[], dtype: string }): Planned | undefined => {
    const dtype = DTYPES.get(s.dtype)
    if (dtype === undefined) return undefined
    let nonzero = BigInt(dtype[1])
    let zero = false
    for (const d of s.shape) {
      if (d === 0) zero = true
      else nonzero *= BigInt(d)
      if (nonzero > INTP_MAX) return undefined
    }
    const nbytes = zero ? 0n : nonzero
    return nbytes > BigInt(SEGMENT_LIMIT) ? undefined : { shape: s.shape, dtype: dtype[0], nbytes }
  }
  const planned: Array<[string, Planned | Planned[]]> = []
  for (const [key, v] of entries as Array<[string, { shape: number[], dtype: string } | Array<{ shape: number[], dtype: string }>]>) {
    const p = Array.isArray(v) ? v.map(plan) : plan(v)
    if (p === undefined || (Array.isArray(p) && p.some((x) => x === undefined))) return { status: 400, code: 'TSHM_INVALID_SPEC' }
    planned.push([key, p as Planned | Planned[]])
  }
  return { status: 201, tensors: planned }
}

const nsChar = fc.constantFrom(...'abcxyzABZ0189_.:@=+-')
const validNamespace = fc.array(fc.string({ unit: nsChar, minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/'))
const namespaceArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 10, arbitrary: validNamespace },
  { weight: 3, arbitrary: fc.constantFrom('', '/', '//', 'a//b', '/a', 'a/', 'a b', 'ψ', 'a\u0000b', 'a\\b', 'a%2Fb', '..', '../..', '.', 'a/../../etc', 'x'.repeat(256), 'x'.repeat(257), `${'ab/'.repeat(85)}a`, 'ＡＢ', 'a\nb', 'tenant\u200b', '$(id)', '*', '?', '#') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: nsChar, minLength: 250, maxLength: 262 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }
)
const validKey = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_:-]{0,15}$/)
const keyArb = fc.oneof(
  { weight: 10, arbitrary: validKey },
  { weight: 3, arbitrary: fc.constantFrom('', '-a', ':a', 'a.b', 'a/b', 'a b', 'ψ', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'prototype', 'k'.repeat(128), 'k'.repeat(129), '0', '1') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }
)
const dimArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: fc.nat(6) },
  { weight: 3, arbitrary: fc.constantFrom<unknown>(0, 1, -1, -0, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 2 ** 63, 1e21, 1e300, 'NaN', 'Infinity', '3', null, true, [2], {}, 0.1) },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }) },
  { weight: 1, arbitrary: fc.double() }
)
const shapeArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: fc.array(dimArb, { maxLength: 6 }) },
  { weight: 2, arbitrary: fc.array(dimArb, { minLength: 30, maxLength: 40 }) },
  { weight: 2, arbitrary: fc.array(fc.constant(1), { minLength: 30, maxLength: 34 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }
)
const dtypeArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...DTYPES.keys()) },
  { weight: 4, arbitrary: fc.constantFrom(...BAD_DTYPES, '', 'f'.repeat(65), 'float32'.padEnd(64, ' ')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }
)
/** Builds objects with Object.fromEntries, so that a key like __proto__ becomes an own key (and reaches the JSON text). */
const entriesOf = <V>(key: fc.Arbitrary<string>, value: fc.Arbitrary<V>, maxLength: number): fc.Arbitrary<Record<string, V>> =>
  fc.uniqueArray(fc.tuple(key, value), { selector: ([k]) => k, maxLength }).map((e) => Object.fromEntries(e) as Record<string, V>)
const specArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ shape: shapeArb, dtype: dtypeArb }) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.record({ shape: shapeArb, dtype: dtypeArb }, { requiredKeys: [] }), fc.option(fc.tuple(fc.constantFrom('nbytes', 'name', 'order', '__proto__', 'prototype'), fc.jsonValue({ maxDepth: 1 }))))
      .map(([s, extra]) => extra === null ? s : { ...s, ...Object.fromEntries([extra]) })
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }
)
const tensorsArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: entriesOf(keyArb, fc.oneof({ weight: 3, arbitrary: specArb }, { weight: 1, arbitrary: fc.array(specArb, { maxLength: 4 }) }), 4) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }
)
const ttlArb: fc.Arbitrary<unknown> = fc.oneof(fc.integer({ min: 0, max: MAX_TTL }), fc.constantFrom<unknown>(-1, 0, 1, MAX_TTL, MAX_TTL + 1, 1.5, 1e300, -0, '60', null, true, 2 ** 53))
/** A request the model accepts, made hostile by zero, one or a few faults, each drawn from the adversarial pools above. */
const goodSpec = fc.record({ shape: fc.array(fc.nat(5), { maxLength: 4 }), dtype: fc.constantFrom(...DTYPES.keys()) })
const goodBody = fc.record({
  namespace: validNamespace,
  tensors: fc.uniqueArray(fc.tuple(validKey, fc.oneof({ weight: 3, arbitrary: goodSpec }, { weight: 1, arbitrary: fc.array(goodSpec, { minLength: 1, maxLength: 3 }) })), { selector: ([k]) => k, minLength: 1, maxLength: 3 }),
  ttl_seconds: fc.integer({ min: 0, max: MAX_TTL })
}, { requiredKeys: ['namespace', 'tensors'] })
type Fault =
  | { at: 'namespace' | 'ttl_seconds' | 'tensors' | 'shape' | 'dtype' | 'spec' | 'dim', value: unknown }
  | { at: 'key', key: string }
  | { at: 'extra' | 'specExtra', key: string, value: unknown }
  | { at: 'drop', key: 'namespace' | 'tensors' | 'shape' | 'dtype' }
const faultArb: fc.Arbitrary<Fault> = fc.oneof(
  namespaceArb.map((value): Fault => ({ at: 'namespace', value })),
  ttlArb.map((value): Fault => ({ at: 'ttl_seconds', value })),
  tensorsArb.map((value): Fault => ({ at: 'tensors', value })),
  shapeArb.map((value): Fault => ({ at: 'shape', value })),
  dimArb.map((value): Fault => ({ at: 'dim', value })),
  dtypeArb.map((value): Fault => ({ at: 'dtype', value })),
  specArb.map((value): Fault => ({ at: 'spec', value })),
  keyArb.map((key): Fault => ({ at: 'key', key })),
  fc.tuple(fc.constantFrom('extra', '__proto__', 'constructor', 'name', 'ttl'), fc.jsonValue({ maxDepth: 2 })).map(([key, value]): Fault => ({ at: 'extra', key, value })),
  fc.tuple(fc.constantFrom('nbytes', 'name', 'order', '__proto__', 'prototype', 'constructor'), fc.jsonValue({ maxDepth: 2 })).map(([key, value]): Fault => ({ at: 'specExtra', key, value })),
  fc.constantFrom<Fault>({ at: 'drop', key: 'namespace' }, { at: 'drop', key: 'tensors' }, { at: 'drop', key: 'shape' }, { at: 'drop', key: 'dtype' })
)

/** Applies faults to a copy of a good body; objects are rebuilt with Object.fromEntries so that __proto__ stays an own key. */
function withFaults (good: { namespace: string, tensors: Array<[string, unknown]>, ttl_seconds?: number }, faults: Fault[]): unknown {
  const body: Record<string, unknown> = { ...good, tensors: undefined }
  let tensors: Array<[string, unknown]> = good.tensors.map(([k, v]) => [k, structuredClone(v)])
  let wholesale: unknown
  const firstSpec = (): Record<string, unknown> | undefined => {
    const v = tensors[0]?.[1]
    const spec = Array.isArray(v) ? v[0] : v
    return isObject(spec) ? spec : undefined
  }
  const setFirstSpec = (spec: unknown): void => {
    const first = tensors[0]
    if (first === undefined) return
    if (Array.isArray(first[1]) && first[1].length > 0) first[1][0] = spec
    else first[1] = spec
  }
  for (const f of faults) {
    const spec = firstSpec()
    if (f.at === 'namespace' || f.at === 'ttl_seconds') body[f.at] = f.value
    else if (f.at === 'tensors') wholesale = f.value
    else if (f.at === 'key' && tensors[0] !== undefined) tensors = [[f.key, tensors[0][1]], ...tensors.slice(1).filter(([k]) => k !== f.key)]
    else if (f.at === 'spec') setFirstSpec(f.value)
    else if ((f.at === 'shape' || f.at === 'dtype') && spec !== undefined) spec[f.at] = f.value
    else if (f.at === 'dim' && spec !== undefined && Array.isArray(spec.shape)) spec.shape = [...spec.shape, f.value]
    else if (f.at === 'extra') body[f.key] = f.value
    else if (f.at === 'specExtra' && spec !== undefined) setFirstSpec({ ...spec, ...Object.fromEntries([[f.key, f.value]]) })
    else if (f.at === 'drop' && (f.key === 'namespace' || f.key === 'tensors')) body[f.key] = undefined
    else if (f.at === 'drop' && spec !== undefined) setFirstSpec(Object.fromEntries(Object.entries(spec).filter(([k]) => k !== f.key)))
  }
  if (!Object.hasOwn(body, 'tensors') || body.tensors === undefined) body.tensors = wholesale ?? Object.fromEntries(tensors)
  if (faults.some((f) => f.at === 'drop' && f.key === 'tensors')) body.tensors = undefined
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined))
}

const createBodyArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: goodBody.map((b) => withFaults(b, [])) },
  { weight: 8, arbitrary: fc.tuple(goodBody, fc.array(faultArb, { minLength: 1, maxLength: 3 })).map(([b, faults]) => withFaults(b, faults)) },
  { weight: 1, arbitrary: fc.jsonValue() }
)

t.test('1. TensorSpec validation: the answer is the reference model\'s, and a refusal creates nothing', async (t) => {
  const prefix = PREFIXES.spec
  const app = await build(t, envFor(prefix))
  const nameRe = new RegExp(`^${prefix}[0-9a-f]{16}$`)
  let created = 0
  const refused = new Map<string, number>()

  const property = async (generated: unknown): Promise<void> => {
    const text = JSON.stringify(generated)
    const parsed: unknown = JSON.parse(text)
    const want = modelCreate(parsed)
    const before = new Set(shmFiles(prefix))
    const res = await send(app, prefix, { method: 'POST', url: '/v1/segments', headers: { 'content-type': 'application/json' }, payload: text })
    if (want.status !== 201) {
      expectError(res, want.status, want.code, `create ${clip(text)}`)
      refused.set(want.code, (refused.get(want.code) ?? 0) + 1)
      checkAccounted(app, prefix)
      return
    }
    if (res.statusCode !== 201) fail(`the model accepts ${clip(text)}, the service answers ${res.statusCode} ${clip(res.body)}`)
    const body = parsed as { namespace: string, ttl_seconds?: number }
    const reply = res.json() as { namespace: string, expires_at: string | null, segments: Record<string, unknown> }
    if (reply.namespace !== body.namespace) fail(`namespace ${reply.namespace} is not ${body.namespace}`)
    if ((reply.expires_at === null) !== ((body.ttl_seconds ?? 600) === 0)) fail(`expires_at ${String(reply.expires_at)} with ttl_seconds ${String(body.ttl_seconds)}`)
    if (!isDeepStrictEqual(Object.keys(reply.segments).sort(), want.tensors.map(([k]) => k).sort())) fail(`keys ${Object.keys(reply.segments).join()} for ${clip(text)}`)
    const names: string[] = []
    for (const [key, planned] of want.tensors) {
      const got = reply.segments[key]
      const pairs: Array<[unknown, Planned]> = Array.isArray(planned)
        ? (Array.isArray(got) && got.length === planned.length ? planned.map((p, i) => [got[i], p]) : fail(`${key}: ${JSON.stringify(got)} is not a list of ${planned.length}`))
        : [[got, planned]]
      for (const [d, p] of pairs) {
        if (!isObject(d) || typeof d.name !== 'string' || !nameRe.test(d.name)) return fail(`${key}: bad descriptor ${JSON.stringify(d)}`)
        if (!isDeepStrictEqual(d.shape, p.shape) || d.dtype !== p.dtype || d.nbytes !== Number(p.nbytes)) {
          fail(`${key}: ${JSON.stringify(d)}, the model says shape ${JSON.stringify(p.shape)} dtype ${p.dtype} nbytes ${p.nbytes}`)
        }
        if (before.has(d.name) || names.includes(d.name)) fail(`${d.name} is not a fresh name`)
        const size = statSync(`/dev/shm/${d.name}`).size
        if (size !== Math.max(Number(p.nbytes), 1)) fail(`${d.name}: file size ${size} for nbytes ${p.nbytes}`)
        names.push(d.name)
      }
    }
    checkAccounted(app, prefix)
    created += names.length
    const released = await send(app, prefix, { method: 'DELETE', url: `/v1/segments?namespace=${encodeURIComponent(body.namespace)}` })
    if (released.statusCode !== 200 || released.json().released !== names.length) fail(`release ${body.namespace}: ${released.body}, expected ${names.length}`)
    const left = shmFiles(prefix).filter((f) => names.includes(f))
    if (left.length > 0) fail(`released names still on /dev/shm: ${left.join()}`)
    checkAccounted(app, prefix)
  }

  // Every run starts from an empty registry, even after a failed one (or fast-check's shrinking would see its leftovers).
  const isolated = async (generated: unknown): Promise<void> => {
    try {
      await property(generated)
    } finally {
      for (const name of registered(app)) await app.inject({ method: 'DELETE', url: `/v1/segments/${name}` })
    }
  }
  await fc.assert(fc.asyncProperty(createBodyArb, isolated), runs(1500))
  await fc.assert(fc.asyncProperty(fc.jsonValue(), isolated), runs(300))
  t.ok(created > 50, `${created} segments were created (and released) on the way`)
  t.ok(refused.size >= 3, `refusals seen: ${JSON.stringify(Object.fromEntries(refused))}`)
  t.equal(app.segments.figures().segments, 0, 'nothing is left registered')
})

// --- 2. Name validation

/** Percent-encodes every byte but letters, digits, _ and -, so that no name is ever read as a path by the URL parser. */
const encodeSegment = (name: string): string =>
  [...Buffer.from(name, 'utf8')].map((b) => /[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
/** What the server decodes from encodeSegment(name): lone surrogates become U+FFFD on the way through UTF-8. */
const decoded = (name: string): string => Buffer.from(name, 'utf8').toString('utf8')

t.test('2. names: only 400 TSHM_INVALID_NAME or 404, and an existing segment is never affected', async (t) => {
  const prefix = PREFIXES.name
  const app = await build(t, envFor(prefix))
  const created = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'victim', tensors: { v: { shape: [16], dtype: 'uint8' } } } })
  const victim = (created.json() as { segments: { v: { name: string } } }).segments.v.name
  const pattern = Buffer.from(Array.from({ length: 16 }, (_, i) => (i * 37 + 5) & 0xff))
  const put = await app.inject({ method: 'PUT', url: `/v1/segments/${victim}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: pattern })
  t.equal(put.statusCode, 204, 'the victim is written')
  const valid = new RegExp(`^${prefix}[0-9a-f]{16}$`)
  const hex16 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 16, maxLength: 16 })
  const crafted = fc.oneof(
    hex16.map((h) => prefix + h),
    hex16.map((h) => `nos_psm_${h}`),
    hex16.map((h) => prefix + h.toUpperCase()),
    hex16.map((h) => prefix + h.slice(1)),
    hex16.map((h) => `${prefix}${h}0`),
    hex16.map((h) => `${prefix}${h}/../${victim}`),
    fc.constantFrom('..', '.', '../..', '..%2F..%2Fetc%2Fpasswd', '%2F', '%00', '%2e%2e', '\u0000', `${victim}\u0000`, `/${victim}`, `//dev/shm/${victim}`,
      `${victim}/`, `../${victim}`, `${victim}%00`, victim.toUpperCase(), ` ${victim}`, `${victim} `, `${victim}\n`, `${victim}0`, victim.slice(0, -1),
      'x'.repeat(300), prefix + 'a'.repeat(300), 'a'.repeat(254), 'a'.repeat(255), `${prefix.slice(0, -1)}\u0455${'0'.repeat(16)}`, '/dev/shm', 'con', 'NUL')
  )
  // '.' and '..' are dot segments that the URL parser resolves before routing; hostile.test.ts covers them.
  const nameArb = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme', maxLength: 8 }), crafted, crafted)
    .filter((n) => n !== '' && !['.', '..'].includes(decoded(n)) && decoded(n) !== victim)
  const RAW = 'application/octet-stream'
  const NPY = 'application/x-npy'
  const op = fc.oneof(
    fc.constant({ route: 'info' as const, method: 'GET' as const }),
    fc.constant({ route: 'info' as const, method: 'DELETE' as const }),
    fc.record({ route: fc.constant('data' as const), method: fc.constant('GET' as const), accept: fc.constantFrom(undefined, NPY, RAW, '*/*', 'text/html', 'application/json;q=0', 'x') }),
    fc.record({
      route: fc.constant('data' as const),
      method: fc.constant('PUT' as const),
      type: fc.constantFrom(RAW, NPY, `${RAW}; charset=binary`, 'text/plain', 'application/json', 'application/x-python-pickle', 'multipart/form-data'),
      body: fc.option(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 32 }).map((b) => Buffer.from(b)), fc.constantFrom('{}', '[1,2]', 'nope', '"ab"').map((s) => Buffer.from(s))))
    })
  )
  const seen = new Map<string, number>()

  await fc.assert(fc.asyncProperty(nameArb, op, async (name, o) => {
    const server = decoded(name)
    const url = `/v1/segments/${encodeSegment(name)}${o.route === 'data' ? '/data' : ''}`
    const headers: Record<string, string> = {}
    let payload: Buffer | undefined
    if (o.method === 'GET' && o.route === 'data' && o.accept !== undefined) headers.accept = o.accept
    if (o.method === 'PUT') {
      headers['content-type'] = o.type
      if (o.body !== null) payload = o.body
    }
    const res = await send(app, prefix, { method: o.method, url, headers, ...(payload === undefined ? {} : { payload }) })
    const body = checkAnswer(res, `${o.method} ${url}`)
    // What the service must answer: the media type is checked first (the upload route reads octet-stream and npy
    // only, body or not), then the name.
    let want: [number, string]
    const type = o.method === 'PUT' ? o.type.split(';')[0] : undefined
    if (type !== undefined && ![RAW, NPY].includes(type)) want = [415, 'TSHM_UNSUPPORTED_MEDIA_TYPE']
    else if (valid.test(server)) want = [404, 'TSHM_SEGMENT_NOT_FOUND']
    else want = [400, 'TSHM_INVALID_NAME']
    if (res.statusCode !== want[0] || body?.code !== want[1]) fail(`${o.method} ${url} (${JSON.stringify(server).slice(0, 80)}): expected ${want.join(' ')}, got ${res.statusCode} ${clip(res.body)}`)
    seen.set(want[1], (seen.get(want[1]) ?? 0) + 1)
    if (!registered(app).has(victim)) fail(`the victim was released by ${o.method} ${url}`)
    if (!readFileSync(`/dev/shm/${victim}`).equals(pattern)) fail(`the victim's bytes changed after ${o.method} ${url}`)
    checkAccounted(app, prefix)
  }), runs(2000))
  t.ok((seen.get('TSHM_INVALID_NAME') ?? 0) > 100 && (seen.get('TSHM_SEGMENT_NOT_FOUND') ?? 0) > 20, `answers seen: ${JSON.stringify(Object.fromEntries(seen))}`)
  const read = await app.inject({ method: 'GET', url: `/v1/segments/${victim}/data`, headers: { accept: RAW } })
  t.same(read.rawPayload, pattern, 'the victim still reads back its bytes')
})

// --- 3 and 4. Decoding descriptor dicts, from JSON and from pickles

interface Seg { key: string, name: string, shape: number[], dtype: string, nbytes: number, data: Buffer }
const LIMITS = { maxKeys: 6, maxListLength: 5, maxDepth: 4 }
const NPZ_KEY = /^[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}$/
const JSON_TYPE = 'application/json'
const NPZ_TYPE = 'application/x-npz'
/** Accept headers and what each one must get (undefined: 406). */
const ACCEPTS: Array<[string | undefined, string | undefined]> = [
  [undefined, JSON_TYPE], ['', JSON_TYPE], [JSON_TYPE, JSON_TYPE], [NPZ_TYPE, NPZ_TYPE], ['*/*', JSON_TYPE], ['application/*', JSON_TYPE],
  ['text/html', undefined], ['application/x-npz;q=0.5, application/json;q=0.9', JSON_TYPE], ['application/json;q=0.4, application/x-npz', NPZ_TYPE],
  ['application/json;q=0, */*', NPZ_TYPE], ['image/png, text/*', undefined], ['*/*;q=0', undefined]
]

interface Decoded { status: 200, type: string, answer: Record<string, unknown>, members: Array<[string, Seg]>, passthrough: Record<string, unknown> }
type DecodeWant = Decoded | { status: number, code: string }
type Classified = { key: string, kind: 'tensor', ref: Record<string, unknown> } | { key: string, kind: 'tensors', refs: Array<Record<string, unknown>> } | { key: string, kind: 'value', value: unknown }

/** /v1/decode with a JSON body, as its OpenAPI description says, under LIMITS. */
function modelDecode (body: unknown, accept: string | undefined, segs: Map<string, Seg>, prefix: string): DecodeWant {
  if (poisoned(body)) return { status: 400, code: 'TSHM_INVALID_JSON' }
  const type = ACCEPTS.find(([a]) => a === accept)?.[1]
  if (type === undefined) return { status: 406, code: 'TSHM_NOT_ACCEPTABLE' }
  const descriptorError = { status: 400, code: 'TSHM_INVALID_DESCRIPTOR' }
  const limit = { status: 400, code: 'TSHM_LIMIT_EXCEEDED' }
  if (!isObject(body)) return descriptorError
  if (Object.keys(body).length > LIMITS.maxKeys) return limit
  const looksLikeDescriptor = (v: unknown): v is Record<string, unknown> => isObject(v) && 'name' in v && 'shape' in v && 'dtype' in v
  const wellTyped = (v: Record<string, unknown>): boolean => typeof v.name === 'string' && typeof v.dtype === 'string' && Array.isArray(v.shape) &&
    v.shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0) &&
    (v.nbytes === undefined || (typeof v.nbytes === 'number' && Number.isSafeInteger(v.nbytes)))
  const withinLimits = (v: unknown, depth: number): boolean => {
    if (Array.isArray(v)) return depth <= LIMITS.maxDepth && v.length <= LIMITS.maxListLength && v.every((x) => withinLimits(x, depth + 1))
    if (isObject(v)) return depth <= LIMITS.maxDepth && Object.keys(v).length <= LIMITS.maxKeys && Object.values(v).every((x) => withinLimits(x, depth + 1))
    return true
  }
  const entries: Classified[] = []
  for (const [key, value] of Object.entries(body)) {
    if (looksLikeDescriptor(value)) {
      if (!wellTyped(value)) return descriptorError
      entries.push({ key, kind: 'tensor', ref: value })
      continue
    }
    if (Array.isArray(value) && value.length > 0) {
      const refs = value.filter(looksLikeDescriptor)
      if (refs.some((r) => !wellTyped(r))) return descriptorError
      if (refs.length === value.length) {
        if (refs.length > LIMITS.maxListLength) return limit
        entries.push({ key, kind: 'tensors', refs })
        continue
      }
      if (refs.length > 0) return descriptorError
    }
    if (!withinLimits(value, 1)) return limit
    entries.push({ key, kind: 'value', value })
  }
  const resolve = (ref: Record<string, unknown>): Seg | DecodeWant => {
    const name = ref.name as string
    if (!new RegExp(`^${prefix}[0-9a-f]{16}$`).test(name)) return { status: 400, code: 'TSHM_INVALID_NAME' }
    const seg = segs.get(name)
    if (seg === undefined) return { status: 404, code: 'TSHM_SEGMENT_NOT_FOUND' }
    const mismatch = canonicalOf(ref.dtype) !== seg.dtype || (ref.shape as number[]).join(',') !== seg.shape.join(',') || (ref.nbytes !== undefined && ref.nbytes !== seg.nbytes)
    return mismatch ? { status: 422, code: 'TSHM_SPEC_MISMATCH' } : seg
  }
  const tensor = (s: Seg): Record<string, unknown> => ({ shape: s.shape, dtype: s.dtype, data: s.data.toString('base64') })
  const answer: Record<string, unknown> = {}
  const members: Array<[string, Seg]> = []
  const passthrough: Record<string, unknown> = {}
  for (const e of entries) {
    if (e.kind === 'value') { answer[e.key] = passthrough[e.key] = e.value; continue }
    const resolved = (e.kind === 'tensor' ? [e.ref] : e.refs).map(resolve)
    const failed = resolved.find((r): r is DecodeWant => !('data' in r))
    if (failed !== undefined) return failed
    const found = resolved as Seg[]
    answer[e.key] = e.kind === 'tensor' ? tensor(found[0] as Seg) : found.map(tensor)
    found.forEach((s, i) => members.push([e.kind === 'tensor' ? e.key : `${e.key}.${i}`, s]))
  }
  if (type === NPZ_TYPE && entries.some((e) => e.kind !== 'value' && (!NPZ_KEY.test(e.key) || e.key === '__passthrough__'))) return descriptorError
  return { status: 200, type, answer, members, passthrough }
}

interface NpzSample { b64: string, members: Record<string, [string, number[], string]>, passthrough: Record<string, unknown> }

/** numpy opens every sampled archive, and each member holds what was written to its segment. */
async function checkNpzSamples (samples: NpzSample[]): Promise<string[]> {
  return await python<string[]>(`
import base64, hashlib, io, json, sys
import numpy as np
out = []
for i, s in enumerate(json.load(sys.stdin)):
    z = np.load(io.BytesIO(base64.b64decode(s['b64'])))
    if sorted(z.files) != sorted(list(s['members']) + ['__passthrough__']):
        out.append(f'{i}: members {sorted(z.files)}')
        continue
    for k, (sha, shape, dtype) in s['members'].items():
        a = z[k]
        if (hashlib.sha256(a.tobytes()).hexdigest(), list(a.shape), str(a.dtype)) != (sha, shape, dtype):
            out.append(f'{i}: {k} is {a.dtype} {a.shape}')
    if json.loads(z['__passthrough__'].tobytes()) != s['passthrough']:
        out.append(f'{i}: passthrough {z["__passthrough__"].tobytes()[:200]!r}')
print(json.dumps(out))`, samples)
}

t.test('decoding', async (t) => {
  const prefix = PREFIXES.decode
  const app = await build(t, { ...envFor(prefix), TENSORSHM_MAX_DICT_KEYS: String(LIMITS.maxKeys), TENSORSHM_MAX_LIST_LENGTH: String(LIMITS.maxListLength), TENSORSHM_MAX_DEPTH: String(LIMITS.maxDepth) })
  const specs = {
    f: { shape: [3, 4], dtype: 'float32' },
    be: { shape: [5], dtype: '>i2' },
    z: { shape: [0, 3], dtype: 'uint8' },
    c: { shape: [2, 2], dtype: 'complex128' },
    b: { shape: [7], dtype: 'bool' },
    s: { shape: [], dtype: 'float64' },
    l: [{ shape: [4], dtype: 'uint8' }, { shape: [2, 2], dtype: 'int64' }]
  }
  const created = await app.inject({ method: 'POST', url: '/v1/segments', payload: { namespace: 'decode/fixture', tensors: specs } })
  t.equal(created.statusCode, 201, 'fixture segments created')
  const descriptors = (created.json() as { segments: Record<string, unknown> }).segments
  // Python writes random values of each dtype and reports the bytes it wrote.
  const written = await python<Record<string, string | string[]>>(`
import json, sys
import numpy as np
from multiprocessing import resource_tracker, shared_memory
rng = np.random.default_rng(11)
def fill(d):
    s = shared_memory.SharedMemory(name=d['name'])
    resource_tracker.unregister(s._name, 'shared_memory')
    a = np.ndarray(d['shape'], d['dtype'], buffer=s.buf)
    a[...] = rng.integers(0, 2, a.shape).astype(a.dtype) if a.dtype == np.bool_ else rng.integers(0, 256, a.nbytes, dtype=np.uint8).view(a.dtype).reshape(a.shape)
    out = a.tobytes().hex()
    del a; s.close()
    return out
print(json.dumps({k: [fill(x) for x in v] if isinstance(v, list) else fill(v) for k, v in json.load(sys.stdin).items()}))`, descriptors)
  const segs: Seg[] = []
  for (const [key, d] of Object.entries(descriptors)) {
    const list = (Array.isArray(d) ? d : [d]) as Array<{ name: string, shape: number[], dtype: string, nbytes: number }>
    const hex = [written[key] ?? []].flat()
    list.forEach((x, i) => segs.push({ key, name: x.name, shape: x.shape, dtype: x.dtype, nbytes: x.nbytes, data: Buffer.from(hex[i] ?? '', 'hex') }))
  }
  for (const s of segs) t.same(readFileSync(`/dev/shm/${s.name}`).subarray(0, s.nbytes), s.data, `${s.key} holds what Python wrote`)
  const byName = new Map(segs.map((s) => [s.name, s]))

  await t.test('3. JSON descriptor dicts: the answer is the reference model\'s, data included', async (t) => {
    const equivalents = (dtype: string): string[] => [...DTYPES].filter(([, [name]]) => name === dtype).map(([text]) => text)
    const segArb = fc.constantFrom(...segs)
    const extras = fc.option(entriesOf(fc.constantFrom('note', 'meta', 'x', 'data'), fc.jsonValue({ maxDepth: 1 }), 2), { nil: undefined })
    const good = segArb.chain((s) => fc.record({ dtype: fc.constantFrom(...equivalents(s.dtype)), nbytes: fc.option(fc.constant(s.nbytes), { nil: undefined }), extra: extras })
      .map(({ dtype, nbytes, extra }) => ({ ...extra, name: s.name, shape: s.shape, dtype, ...(nbytes === undefined ? {} : { nbytes }) })))
    const bad = segArb.chain((s) => fc.oneof(
      fc.constantFrom([s.nbytes], [...s.shape, 1], [], [1], [0], [3, 4, 1]).filter((sh) => sh.join(',') !== s.shape.join(',')).map((shape) => ({ name: s.name, shape, dtype: s.dtype })),
      fc.constantFrom(...DTYPES.keys(), 'U8', 'O', 'x').filter((d) => canonicalOf(d) !== s.dtype).map((dtype) => ({ name: s.name, shape: s.shape, dtype })),
      fc.constantFrom(s.nbytes + 1, -1, 0, 2 ** 40).filter((n) => n !== s.nbytes).map((nbytes) => ({ name: s.name, shape: s.shape, dtype: s.dtype, nbytes })),
      fc.constantFrom(`nos_psm_${s.name.slice(-16)}`, `${prefix}0000000000000000`, s.name.toUpperCase(), `${s.name}/`, `${s.name}\u0000`, `../${s.name}`, s.name + 'a'.repeat(300))
        .map((name) => ({ name, shape: s.shape, dtype: s.dtype })),
      fc.constantFrom<Record<string, unknown>>({ name: 42 }, { name: null }, { name: [s.name] }, { shape: 'x' }, { shape: {} }, { shape: [1.5] }, { shape: [-1] }, { shape: ['1'] },
        { dtype: 5 }, { dtype: null }, { nbytes: 1.5 }, { nbytes: '4' }, { nbytes: null }, { shape: [2 ** 53] })
        .map((patch) => ({ name: s.name, shape: s.shape, dtype: s.dtype, ...patch }))
    ))
    const partial = segArb.chain((s) => fc.constantFrom({ name: s.name, shape: s.shape }, { name: s.name, dtype: s.dtype }, { shape: s.shape, dtype: s.dtype }))
    const passthrough = fc.jsonValue({ maxDepth: 5 })
    const value = fc.oneof(
      { weight: 6, arbitrary: good },
      { weight: 3, arbitrary: bad },
      { weight: 3, arbitrary: fc.array(fc.oneof({ weight: 6, arbitrary: good }, { weight: 1, arbitrary: bad }, { weight: 1, arbitrary: passthrough }), { maxLength: 6 }) },
      { weight: 3, arbitrary: passthrough },
      { weight: 1, arbitrary: partial }
    )
    const key = fc.oneof(
      { weight: 8, arbitrary: fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_:-]{0,10}$/) },
      { weight: 2, arbitrary: fc.constantFrom('a.b', 'ψ', '', '__passthrough__', ' ', 'a/b', 'k'.repeat(130), 'constructor', 'toString', '0', '7', '__proto__') }
    )
    const dict = fc.oneof({ weight: 12, arbitrary: entriesOf(key, value, 8) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) })
    const outcomes = new Map<string, number>()
    const samples: NpzSample[] = []

    await fc.assert(fc.asyncProperty(dict, fc.constantFrom(...ACCEPTS.map(([a]) => a)), async (generated, accept) => {
      const text = JSON.stringify(generated)
      const parsed: unknown = JSON.parse(text)
      const want = modelDecode(parsed, accept, byName, prefix)
      const headers: Record<string, string> = { 'content-type': JSON_TYPE, ...(accept === undefined ? {} : { accept }) }
      const res = await send(app, prefix, { method: 'POST', url: '/v1/decode', headers, payload: text })
      const label = `decode ${clip(text)} (Accept ${String(accept)})`
      if (!('answer' in want)) {
        expectError(res, want.status, want.code, label)
        outcomes.set(want.code, (outcomes.get(want.code) ?? 0) + 1)
        return
      }
      if (res.statusCode !== 200) fail(`${label}: the model answers 200, the service ${res.statusCode} ${clip(res.body)}`)
      outcomes.set(want.type, (outcomes.get(want.type) ?? 0) + 1)
      if (want.type === JSON_TYPE) {
        const answer: unknown = JSON.parse(res.body)
        if (!isDeepStrictEqual(answer, want.answer)) fail(`${label}: answered ${clip(res.body)}, the model says ${clip(JSON.stringify(want.answer))}`)
        return
      }
      if (res.headers['content-type'] !== NPZ_TYPE) fail(`${label}: content-type ${String(res.headers['content-type'])}`)
      if (Number(res.headers['content-length']) !== res.rawPayload.length) fail(`${label}: Content-Length ${String(res.headers['content-length'])} for ${res.rawPayload.length} bytes`)
      if (samples.length < 40) {
        const members = Object.fromEntries(want.members.map(([m, s]): [string, [string, number[], string]] => [m, [createHash('sha256').update(s.data).digest('hex'), s.shape, s.dtype]]))
        samples.push({ b64: res.rawPayload.toString('base64'), members, passthrough: want.passthrough })
      }
    }), runs(1200))
    t.ok(outcomes.size >= 6, `outcomes seen: ${JSON.stringify(Object.fromEntries(outcomes))}`)
    t.ok(samples.length > 5, `${samples.length} NPZ answers sampled`)
    t.same(await checkNpzSamples(samples), [], 'numpy reads every sampled NPZ answer as the model says')
    checkAccounted(app, prefix)
  })

  await t.test('4. pickles: arbitrary and mutated bodies never 5xx, and a refused global is always 422 TSHM_PICKLE_REFUSED', async (t) => {
    const generated = await python<{ real: string[], evil: Array<[string, number]> }>(NOS_STANDIN + PICKLES_PY, descriptors)
    const real = generated.real.map((b) => Buffer.from(b, 'base64'))
    const evil = generated.evil.map(([b, at]): [Buffer, number] => [Buffer.from(b, 'base64'), at])
    t.ok(real.length >= 15 && evil.length >= 40, `${real.length} real pickles and ${evil.length} with a refused global`)
    const post = async (body: Buffer, accept: string): Promise<Res> =>
      await send(app, prefix, { method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/x-python-pickle', accept }, payload: body })

    // The unmutated pickles first: what NOS sends decodes to the data Python wrote.
    for (const body of real) {
      const res = await post(body, JSON_TYPE)
      t.equal(res.statusCode, 200, `a real pickle decodes: ${clip(res.body)}`)
    }
    for (const [body] of evil) {
      const res = await post(body, JSON_TYPE)
      t.match(res.json(), { statusCode: 422, code: 'TSHM_PICKLE_REFUSED' }, 'a refused global')
    }

    const outcomes = new Map<string, number>()
    const tensorsMatch = (answer: unknown): void => {
      if (!isObject(answer)) return
      for (const v of Object.values(answer).flatMap((x) => Array.isArray(x) ? x : [x])) {
        if (!isObject(v) || Object.keys(v).sort().join() !== 'data,dtype,shape' || typeof v.data !== 'string') continue
        const data = Buffer.from(v.data, 'base64')
        if (!segs.some((s) => s.dtype === v.dtype && isDeepStrictEqual(s.shape, v.shape) && s.data.equals(data))) fail(`a decoded tensor ${clip(JSON.stringify(v))} is no segment's data`)
      }
    }
    const check = async (body: Buffer, accept: string): Promise<void> => {
      const res = await post(body, accept)
      const err = checkAnswer(res, `pickle ${body.toString('hex').slice(0, 120)}`)
      const key = err === undefined ? String(res.statusCode) : String(err.code)
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
      if (res.statusCode === 422 && err?.code !== 'TSHM_PICKLE_REFUSED' && err?.code !== 'TSHM_SPEC_MISMATCH') fail(`422 with ${String(err?.code)}`)
      if (err !== undefined && /refused global/.test(String(err.message)) && err.code !== 'TSHM_PICKLE_REFUSED') fail(`a refused global answered ${String(err.code)}`)
      if (res.statusCode === 200 && accept === JSON_TYPE) tensorsMatch(JSON.parse(res.body))
      if (res.statusCode === 200 && accept === NPZ_TYPE && Number(res.headers['content-length']) !== res.rawPayload.length) fail('NPZ Content-Length is not the body length')
    }
    const accept = fc.constantFrom(JSON_TYPE, NPZ_TYPE)
    const corpus = [...real, ...evil.map(([b]) => b)]
    const mutant = fc.tuple(fc.nat({ max: corpus.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([i, ms]) => mutate(corpus[i] ?? Buffer.alloc(0), ms))
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom(2, 3, 4, 5), fc.uint8Array({ maxLength: 200 })).map(([p, b]) => Buffer.concat([Buffer.from([0x80, p]), b, Buffer.from('.')]))
    )
    await fc.assert(fc.asyncProperty(fc.oneof({ weight: 3, arbitrary: mutant }, { weight: 1, arbitrary: bytes }), accept, check), runs(2000))
    // Mutants mostly break the pickle or name a refused global; the rarer answers (200, 404, 422) come and go with the seed.
    const seen = JSON.stringify(Object.fromEntries(outcomes))
    t.ok(outcomes.has('TSHM_INVALID_PICKLE') && outcomes.has('TSHM_PICKLE_REFUSED') && outcomes.size >= 3, `outcomes seen: ${seen}`)

    // Bytes after the refused global cannot change the verdict: the reader refuses it as soon as it is named.
    const after = fc.tuple(fc.nat({ max: evil.length - 1 }), fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), insert: fc.boolean() }), { minLength: 1, maxLength: 6 }))
    await fc.assert(fc.asyncProperty(after, accept, async ([i, edits], acceptType) => {
      const [base, at] = evil[i] ?? fail('no evil pickle')
      let body = Buffer.from(base)
      for (const e of edits) {
        const pos = at + (e.at % Math.max(body.length - at, 1))
        if (e.insert || pos >= body.length) body = Buffer.concat([body.subarray(0, pos), Buffer.from([e.byte]), body.subarray(pos)])
        else body[pos] = e.byte
      }
      const res = await post(body, acceptType)
      expectError(res, 422, 'TSHM_PICKLE_REFUSED', `a pickle naming a refused global before byte ${at}, edited from there on (${body.toString('hex').slice(0, 160)})`)
    }), runs(600))
    checkAccounted(app, prefix)
  })

  await t.test('after decoding, the fixture segments are intact', async (t) => {
    for (const s of segs) t.same(readFileSync(`/dev/shm/${s.name}`).subarray(0, s.nbytes), s.data, s.key)
    checkAccounted(app, prefix)
  })
})

/**
 * Real pickles of descriptor dicts (protocols 2-5 and NOS's per-key form) and pickles that name a refused global,
 * each with the offset just past the opcode (and its argument) where an unpickler first meets a global it must
 * refuse, as pickletools reads it.
 */
const PICKLES_PY = String.raw`
import base64, json, os, pickle, pickletools, subprocess, sys, types
segs = json.load(sys.stdin)
obj = lambda v: [nos_object(x) for x in v] if isinstance(v, list) else nos_object(v)
b64 = lambda data: base64.b64encode(data).decode()
dicts = [
    {k: obj(v) for k, v in segs.items() if k != 's'},
    {'f': obj(segs['f']), 'prompt': 'a cat', 'n': 2 ** 70, 'raw': b'\x00\xff', 'nested': {'a': (1, 2.5, None, True), 'b': [b'x', bytearray(b'y')]}},
    {'l': obj(segs['l']), 'be': obj(segs['be']), 'z': obj(segs['z']), 's': obj(segs['s'])},
]
real = []
for d in dicts:
    for p in (2, 3, 4, 5):
        real.append(b64(pickle.dumps(d, protocol=p)))
    real.append(b64(pickle.dumps({k: pickle.dumps(v, protocol=5) for k, v in d.items()}, protocol=5)))

def module(name):
    m = sys.modules.get(name)
    if m is None:
        m = sys.modules[name] = types.ModuleType(name)
        parent, _, child = name.rpartition('.')
        if parent:
            setattr(module(parent), child, m)
    return m

def named(mod, name):
    m = module(mod)
    if getattr(m, name, None) is None:
        def fn(*args):
            raise RuntimeError('never called')
        fn.__module__, fn.__name__, fn.__qualname__ = mod, name, name
        setattr(m, name, fn)
    return getattr(m, name)

class Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args
    def __reduce__(self):
        return (self.fn, self.args)

ALLOWED = {('nos.common.shm', 'SharedMemoryNumpyObject'), ('_codecs', 'encode'), ('builtins', 'bytes'), ('builtins', 'bytearray'), ('__builtin__', 'bytes'), ('__builtin__', 'bytearray')}
def refused_at(data):
    memo, strs = {}, []
    for op, arg, pos in pickletools.genops(data):
        n = op.name
        if n in ('SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE'):
            strs.append(arg)
        elif n in ('BINGET', 'LONG_BINGET', 'GET'):
            strs.append(memo.get(arg))
        elif n == 'MEMOIZE':
            memo[len(memo)] = strs[-1] if strs else None
        elif n in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[arg] = strs[-1] if strs else None
        elif n == 'GLOBAL':
            if tuple(arg.split(' ', 1)) not in ALLOWED:
                return pos
        elif n == 'STACK_GLOBAL':
            if (strs[-2], strs[-1]) not in ALLOWED:
                return pos
        elif n in ('INST', 'OBJ', 'EXT1', 'EXT2', 'EXT4', 'PERSID', 'BINPERSID', 'EMPTY_SET', 'FROZENSET'):
            return pos
        else:
            strs.append(None)
    raise SystemExit('no refused global in a pickle meant to have one')

def refusal(data):
    # The first byte after the refused opcode and its argument: what follows cannot change the verdict.
    at = refused_at(data)
    return next((pos for _, _, pos in pickletools.genops(data) if pos > at), len(data))

targets = [(os.system, ('id',)), (named('posix', 'system'), ('id',)), (eval, ('1',)), (exec, ('1',)), (subprocess.Popen, (['id'],)),
           (named('nt', 'system'), ('x',)), (getattr, (1, 'real')), (named('nos.common.shm', 'Other'), ()),
           (named('nos.common.shmx', 'SharedMemoryNumpyObject'), ()), (named('copyreg', '_reconstructor'), (1, 2, 3)), (named('torch._utils', '_rebuild_tensor'), ())]
evil = []
for fn, args in targets:
    for p in (2, 3, 4, 5):
        for first in (True, False):
            d = {'payload': Call(fn, args), 'f': obj(segs['f'])} if first else {'f': obj(segs['f']), 'prompt': 'x', 'payload': Call(fn, args)}
            data = pickle.dumps(d, protocol=p)
            evil.append([b64(data), refusal(data)])
print(json.dumps({'real': real, 'evil': evil}))
`

// --- 5. Two API keys: model-based sequences of operations

type Who = 'A' | 'B'
const KEYS: Record<Who, string> = { A: 'prop-tenant-a-key-000000000001', B: 'prop-tenant-b-key-000000000002' }
const other = (who: Who): Who => who === 'A' ? 'B' : 'A'
interface MSeg { name: string, owner: Who, namespace: string, key: string, nbytes: number, data: Buffer, alive: boolean }
interface Model { run: number, segs: MSeg[], names: Record<Who, Set<string>> }

/** Who holds a root: the owner of its live segments. A claim ends with its last segment, so nobody squats a root. */
const holderOf = (m: Model, root: string): Who | undefined => m.segs.find((s) => s.alive && (s.namespace === root || s.namespace.startsWith(`${root}/`)))?.owner
interface Real { app: FastifyInstance, prefix: string }
type Cmd = fc.AsyncCommand<Model, Real>

const rootName = (m: Model, i: number): string => `r${m.run}x${i}`
const covers = (ns: string, prefix: string): boolean => ns === prefix || ns.startsWith(`${prefix}/`)
const pick = (m: Model, i: number): MSeg | undefined => m.segs.length === 0 ? undefined : m.segs[i % m.segs.length]
const mine = (m: Model, who: Who, ns?: string): MSeg[] => m.segs.filter((s) => s.alive && s.owner === who && (ns === undefined || covers(s.namespace, ns)))

/** Answers by caller and status, to show that the runs reached every branch. */
const tally = new Map<string, number>()

/** Sends as `who` (no key: null); the answer follows the common rules and never shows the other key's names. */
async function request (m: Model, r: Real, who: Who | null, options: InjectOptions): Promise<Res> {
  const headers = { ...(options.headers as Record<string, string> | undefined), ...(who === null ? {} : { authorization: `Bearer ${KEYS[who]}` }) }
  const res = await send(r.app, r.prefix, { ...options, headers })
  const label = `${String(options.method)} ${res.statusCode}`
  tally.set(label, (tally.get(label) ?? 0) + 1)
  const shown = res.body + JSON.stringify(res.headers)
  const hidden = who === null ? [...m.names.A, ...m.names.B] : [...m.names[other(who)]]
  const seen = hidden.find((n) => shown.includes(n))
  if (seen !== undefined) fail(`${who ?? 'a request without a key'} saw ${seen}, another key's segment, answering ${String(options.method)} ${String(options.url)}: ${clip(res.body)}`)
  return res
}

/** After every command: what the model holds alive is registered and on /dev/shm; what it released is neither. */
function invariants (m: Model, r: Real): void {
  for (const s of m.segs) {
    const isRegistered = registered(r.app).has(s.name)
    if (isRegistered !== s.alive || existsSync(`/dev/shm/${s.name}`) !== s.alive) {
      fail(`${s.owner}'s ${s.name} (${s.namespace}): the model says ${s.alive ? 'alive' : 'released'}, registered ${isRegistered}`)
    }
  }
}

const unknownName = (r: Real): string => `${r.prefix}${'0'.repeat(16)}`
const expectStatus = (res: Res, status: number, what: string): void => { if (res.statusCode !== status) fail(`${what}: expected ${status}, got ${res.statusCode} ${clip(res.body)}`) }

class Create implements Cmd {
  constructor (readonly who: Who, readonly root: number, readonly sub: string, readonly key: string, readonly size: number) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const root = rootName(m, this.root)
    const namespace = this.sub === '' ? root : `${root}/${this.sub}`
    const res = await request(m, r, this.who, { method: 'POST', url: '/v1/segments', payload: { namespace, tensors: { [this.key]: { shape: [this.size], dtype: 'uint8' } } } })
    const holder = holderOf(m, root)
    if (holder !== undefined && holder !== this.who) return expectError(res, 403, 'TSHM_NAMESPACE_FORBIDDEN', this.toString())
    if (m.segs.some((s) => s.alive && s.namespace === namespace && s.key === this.key)) return expectError(res, 409, 'TSHM_DUPLICATE_KEY', this.toString())
    expectStatus(res, 201, this.toString())
    const d = (res.json() as { segments: Record<string, { name: string, nbytes: number }> }).segments[this.key] ?? fail('no descriptor')
    if (d.nbytes !== this.size) fail(`nbytes ${d.nbytes}`)
    m.segs.push({ name: d.name, owner: this.who, namespace, key: this.key, nbytes: this.size, data: Buffer.alloc(this.size), alive: true })
    m.names[this.who].add(d.name)
    // A new segment reads as zeros, whether it is fresh or a released one recycled for the same key.
    const read = await request(m, r, this.who, { method: 'GET', url: `/v1/segments/${d.name}/data`, headers: { accept: 'application/octet-stream' } })
    if (read.statusCode !== 200 || !read.rawPayload.equals(Buffer.alloc(this.size))) fail(`${this.toString()}: a new segment does not read as zeros: ${read.rawPayload.toString('hex').slice(0, 64)}`)
    invariants(m, r)
  }

  toString (): string { return `${this.who}.create(r${this.root}${this.sub === '' ? '' : `/${this.sub}`}, ${this.key}, ${this.size})` }
}

class List implements Cmd {
  constructor (readonly who: Who, readonly root: number | null) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const ns = this.root === null ? undefined : rootName(m, this.root)
    const res = await request(m, r, this.who, { method: 'GET', url: `/v1/segments${ns === undefined ? '' : `?namespace=${ns}`}` })
    expectStatus(res, 200, this.toString())
    const got = (res.json() as { segments: Array<{ name: string }> }).segments.map((s) => s.name).sort()
    const want = mine(m, this.who, ns).map((s) => s.name).sort()
    if (!isDeepStrictEqual(got, want)) fail(`${this.toString()}: listed ${JSON.stringify(got)}, the model has ${JSON.stringify(want)}`)
  }

  toString (): string { return `${this.who}.list(${this.root === null ? '' : `r${this.root}`})` }
}

/** GET, GET data, DELETE: 2xx for the owner of a live segment, 404 for anyone else. */
class Touch implements Cmd {
  constructor (readonly who: Who, readonly target: number, readonly action: 'get' | 'read' | 'release') {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const seg = pick(m, this.target)
    const name = seg?.name ?? unknownName(r)
    const owns = seg !== undefined && seg.alive && seg.owner === this.who
    const options: InjectOptions = this.action === 'get'
      ? { method: 'GET', url: `/v1/segments/${name}` }
      : this.action === 'read'
        ? { method: 'GET', url: `/v1/segments/${name}/data`, headers: { accept: 'application/octet-stream' } }
        : { method: 'DELETE', url: `/v1/segments/${name}` }
    const res = await request(m, r, this.who, options)
    if (!owns) return expectError(res, 404, 'TSHM_SEGMENT_NOT_FOUND', this.toString())
    expectStatus(res, this.action === 'release' ? 204 : 200, this.toString())
    if (this.action === 'get' && (res.json() as { name: string }).name !== name) fail(`${this.toString()}: another segment answered`)
    if (this.action === 'read' && !res.rawPayload.equals(seg.data)) fail(`${this.toString()}: read ${res.rawPayload.toString('hex')}, the model has ${seg.data.toString('hex')}`)
    if (this.action === 'release') seg.alive = false
    invariants(m, r)
  }

  toString (): string { return `${this.who}.${this.action}(#${this.target})` }
}

class Write implements Cmd {
  constructor (readonly who: Who, readonly target: number, readonly seed: number) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const seg = pick(m, this.target)
    const name = seg?.name ?? unknownName(r)
    const data = Buffer.from(Array.from({ length: seg?.nbytes ?? 4 }, (_, i) => (this.seed + i * 131) & 0xff))
    const res = await request(m, r, this.who, { method: 'PUT', url: `/v1/segments/${name}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: data })
    if (seg === undefined || !seg.alive || seg.owner !== this.who) return expectError(res, 404, 'TSHM_SEGMENT_NOT_FOUND', this.toString())
    expectStatus(res, 204, this.toString())
    seg.data = data
    invariants(m, r)
  }

  toString (): string { return `${this.who}.write(#${this.target}, ${this.seed})` }
}

class Decode implements Cmd {
  constructor (readonly who: Who, readonly targets: number[]) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const chosen = this.targets.map((i) => pick(m, i))
    const body = Object.fromEntries(chosen.map((s, i) => [`k${i}`, { name: s?.name ?? unknownName(r), shape: [s?.nbytes ?? 1], dtype: 'uint8' }]))
    const res = await request(m, r, this.who, { method: 'POST', url: '/v1/decode', payload: body })
    if (chosen.some((s) => s === undefined || !s.alive || s.owner !== this.who)) return expectError(res, 404, 'TSHM_SEGMENT_NOT_FOUND', this.toString())
    expectStatus(res, 200, this.toString())
    const answer = res.json() as Record<string, { data: string }>
    chosen.forEach((s, i) => { if (s !== undefined && answer[`k${i}`]?.data !== s.data.toString('base64')) fail(`${this.toString()}: k${i} is not ${s.name}'s data`) })
  }

  toString (): string { return `${this.who}.decode(${this.targets.map((i) => `#${i}`).join(', ')})` }
}

/** Namespace-wide release and renew: they count (and touch) the caller's segments only. */
class Namespace implements Cmd {
  constructor (readonly who: Who, readonly root: number, readonly sub: string, readonly action: 'release' | 'renew', readonly ttl: number | null) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const ns = this.sub === '' ? rootName(m, this.root) : `${rootName(m, this.root)}/${this.sub}`
    const res = this.action === 'release'
      ? await request(m, r, this.who, { method: 'DELETE', url: `/v1/segments?namespace=${encodeURIComponent(ns)}` })
      : await request(m, r, this.who, { method: 'POST', url: '/v1/renew', payload: { namespace: ns, ...(this.ttl === null ? {} : { ttl_seconds: this.ttl }) } })
    expectStatus(res, 200, this.toString())
    const affected = mine(m, this.who, ns)
    const count = (res.json() as { released?: number, renewed?: number })[this.action === 'release' ? 'released' : 'renewed']
    if (count !== affected.length) fail(`${this.toString()}: ${String(count)}, the model has ${affected.length}`)
    if (this.action === 'release') for (const s of affected) s.alive = false
    invariants(m, r)
  }

  toString (): string { return `${this.who}.${this.action}Namespace(r${this.root}${this.sub === '' ? '' : `/${this.sub}`}${this.ttl === null ? '' : `, ttl ${this.ttl}`})` }
}

/** Without a key, or with a wrong one: 401 and nothing else, whatever the route. */
class Stranger implements Cmd {
  constructor (readonly auth: string | null, readonly target: number, readonly route: number) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const name = pick(m, this.target)?.name ?? unknownName(r)
    const routes: InjectOptions[] = [
      { method: 'GET', url: '/v1/segments' },
      { method: 'GET', url: `/v1/segments/${name}` },
      { method: 'GET', url: `/v1/segments/${name}/data` },
      { method: 'DELETE', url: `/v1/segments/${name}` },
      { method: 'POST', url: '/v1/decode', payload: { x: { name, shape: [1], dtype: 'uint8' } } },
      { method: 'DELETE', url: `/v1/segments?namespace=${rootName(m, 0)}` }
    ]
    const options = routes[this.route % routes.length] ?? fail('no route')
    const res = await request(m, r, null, { ...options, headers: this.auth === null ? {} : { authorization: this.auth } })
    expectError(res, 401, 'TSHM_UNAUTHORIZED', this.toString())
    invariants(m, r)
  }

  toString (): string { return `stranger(${JSON.stringify(this.auth)}, #${this.target}, route ${this.route})` }
}

t.test('5. two API keys: B never sees A\'s names or data, and only A (or a lease) removes A\'s segments', async (t) => {
  const prefix = PREFIXES.keys
  const app = await build(t, { ...envFor(prefix), TENSORSHM_API_KEYS: `${KEYS.A},${KEYS.B}` })
  const real: Real = { app, prefix }
  const who = fc.constantFrom<Who>('A', 'B')
  const root = fc.nat({ max: 2 })
  const sub = fc.constantFrom('', 'job', 'job/1', 'x')
  const create = fc.tuple(who, root, sub, fc.constantFrom('img', 'mask', 'k:1'), fc.constantFrom(0, 1, 3, 8, 64)).map(([w, r, s, k, n]) => new Create(w, r, s, k, n))
  const commands: Array<fc.Arbitrary<Cmd>> = [
    create, create, create,
    fc.tuple(who, fc.option(root)).map(([w, r]) => new List(w, r)),
    fc.tuple(who, fc.nat(), fc.constantFrom('get' as const, 'read' as const, 'release' as const)).map(([w, i, a]) => new Touch(w, i, a)),
    fc.tuple(who, fc.nat(), fc.constantFrom('get' as const, 'read' as const)).map(([w, i, a]) => new Touch(w, i, a)),
    fc.tuple(who, fc.nat(), fc.nat(255)).map(([w, i, s]) => new Write(w, i, s)),
    fc.tuple(who, fc.array(fc.nat(), { minLength: 1, maxLength: 3 })).map(([w, ts]) => new Decode(w, ts)),
    fc.tuple(who, root, sub, fc.constantFrom('release' as const, 'renew' as const), fc.option(fc.constantFrom(0, 60, 3600))).map(([w, r, s, a, ttl]) => new Namespace(w, r, s, a, ttl)),
    fc.tuple(fc.option(fc.constantFrom('Bearer nope-nope-nope-nope', `Bearer ${KEYS.A}x`, `bearer ${KEYS.B}`, 'Basic eDp5')), fc.nat(), fc.nat()).map(([a, i, route]) => new Stranger(a, i, route))
  ]
  let run = 0
  let steps = 0

  await fc.assert(fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: 'medium' }), async (cmds) => {
    const model: Model = { run: ++run, segs: [], names: { A: new Set(), B: new Set() } }
    try {
      await fc.asyncModelRun(() => ({ model, real }), cmds)
      steps += [...cmds].length
    } finally {
      // Each run starts from nothing: both keys release every root this run used.
      for (const w of ['A', 'B'] as const) {
        for (let i = 0; i < 3; i++) await app.inject({ method: 'DELETE', url: `/v1/segments?namespace=${rootName(model, i)}`, headers: { authorization: `Bearer ${KEYS[w]}` } })
      }
    }
    if (app.segments.figures().segments !== 0) fail(`${app.segments.figures().segments} segments outlived the run`)
    checkAccounted(app, prefix)
  }), runs(100))
  t.ok(steps > 500, `${steps} commands in ${run} runs`)
  t.comment(`answers: ${JSON.stringify(Object.fromEntries([...tally].sort()))}`)
  for (const label of ['POST 201', 'POST 403', 'POST 409', 'GET 404', 'PUT 204', 'PUT 404', 'DELETE 204', 'DELETE 404', 'POST 200', 'GET 401']) {
    t.ok((tally.get(label) ?? 0) > 0, `some request was answered ${label}`)
  }
})

for (const prefix of Object.values(PREFIXES)) checkNoLeftovers(t, prefix)
