// The errors each operation documents are exactly those it can answer. That no route answers an error it does not
// document is checked in every suite (test/helpers/build.ts); here every documented one is provoked, operation by
// operation, and the two lists compared. TSHM_INTERNAL is documented everywhere and cannot be provoked on purpose.
import t from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { truncateSync, unlinkSync } from 'node:fs'
import { Readable } from 'node:stream'
import { errorInfo, type ErrorName } from '../src/errors.js'
import { parseDtype } from '../src/codecs/dtype.js'
import { npyHeader } from '../src/codecs/npy.js'
import { OPERATOR } from '../src/segments/caller.js'
import { documentedErrors } from '../routes/error-responses.js'
import { build, checkNoLeftovers, create, suitePrefix } from './helpers/build.js'
import { poll, sleep } from './helpers/server.js'

const prefix = suitePrefix('contract')
const KEY_A = 'alpha-key-0123456789abcdef'
const KEY_B = 'bravo-key-0123456789abcdef'
const base = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_SWEEP_INTERVAL: '3600', TENSORSHM_MAX_EVENT_LOOP_DELAY: '0' }
const unknown = `${prefix}0000000000000000`
const json = { 'content-type': 'application/json' }
const f32 = parseDtype('float32')
const f64 = parseDtype('float64')
if (f32 === undefined || f64 === undefined) throw new Error('float dtypes must parse')

/** One request per operation that reaches its route: what onRequest hooks refuse does not depend on the rest. */
const OPERATIONS: Record<string, (name: string) => InjectOptions> = {
  readyz: () => ({ url: '/readyz' }),
  metrics: () => ({ url: '/metrics' }),
  createSegments: () => ({ method: 'POST', url: '/v1/segments', payload: { namespace: 'c/x', tensors: { k: { shape: [1], dtype: 'uint8' } } } }),
  listSegments: () => ({ url: '/v1/segments' }),
  releaseNamespace: () => ({ method: 'DELETE', url: '/v1/segments?namespace=c' }),
  getSegment: (name) => ({ url: `/v1/segments/${name}` }),
  releaseSegment: (name) => ({ method: 'DELETE', url: `/v1/segments/${name}` }),
  renew: () => ({ method: 'POST', url: '/v1/renew', payload: { namespace: 'c' } }),
  readTensor: (name) => ({ url: `/v1/segments/${name}/data` }),
  writeTensor: (name) => ({ method: 'PUT', url: `/v1/segments/${name}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(64) }),
  decode: (name) => ({ method: 'POST', url: '/v1/decode', payload: { x: { name, shape: [4, 4], dtype: 'float32' } } }),
  stats: () => ({ url: '/v1/stats' })
}

const seen = new Map<string, Set<string>>()
function check (op: string, name: ErrorName, res: LightMyRequestResponse): void {
  const code = (res.json() as { code?: string }).code ?? `${res.statusCode}`
  if (code !== errorInfo(name).code) t.fail(`${op}: expected ${errorInfo(name).code}, got ${res.statusCode} ${res.body.slice(0, 200)}`)
  else (seen.get(op) ?? seen.set(op, new Set()).get(op))?.add(code)
}
const expect = async (app: FastifyInstance, op: string, name: ErrorName, options: InjectOptions): Promise<void> => { check(op, name, await app.inject(options)) }

/** A fresh segment of [4, 4] float32 in `app`, for cases that damage it. */
const victim = async (app: FastifyInstance, ns: string): Promise<string> => (await create(app, ns, { v: { shape: [4, 4], dtype: 'float32' } })).v?.name ?? ''

// Only a caller on the Unix socket meets these (inject has no peer): test/local-socket.test.ts provokes them as real users.
const UNPROVOKABLE = ['TSHM_INTERNAL', 'TSHM_GROUP_FORBIDDEN', 'TSHM_OWNERSHIP_UNAVAILABLE']
/** Met only by a caller on the Unix socket, which inject has not: test/release-on-exit.test.ts provokes these. */
const SOCKET_ONLY: Record<string, string[]> = { createSegments: ['TSHM_BUSY'] }

t.test('every documented error of every operation can be provoked', async (t) => {
  const plain = await build(t, { ...base, TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE: '2', TENSORSHM_BODY_LIMIT: '4KiB', TENSORSHM_MAX_SEGMENT_BYTES: '1TiB', TENSORSHM_MAX_OPEN_SEGMENTS: '1', TENSORSHM_MAX_DICT_KEYS: '4' })
  const x = await victim(plain, 'fixture')
  const big = JSON.stringify({ namespace: 'c', tensors: { k: { shape: [1], dtype: 'uint8' } }, pad: 'x'.repeat(5000) })
  const badUrl = (op: string, path: string) => expect(plain, op, 'InvalidRequest', { ...OPERATIONS[op]?.(x), url: path })

  // What each operation's own checks refuse.
  await expect(plain, 'createSegments', 'InvalidRequest', { method: 'POST', url: '/v1/segments', payload: { namespace: 'c' } })
  await expect(plain, 'createSegments', 'InvalidSpec', { method: 'POST', url: '/v1/segments', payload: { namespace: 'c', tensors: { k: { shape: [1], dtype: 'O' } } } })
  for (const op of ['createSegments', 'renew', 'decode']) {
    const { method, url } = OPERATIONS[op]?.(x) ?? {}
    await expect(plain, op, 'InvalidJson', { method, url, headers: json, payload: '{' })
    await expect(plain, op, 'BodyTooLarge', { method, url, headers: json, payload: big })
    await expect(plain, op, 'UnsupportedMediaType', { method, url, headers: { 'content-type': 'text/plain' }, payload: 'x' })
  }
  await create(plain, 'dup', { k: { shape: [1], dtype: 'uint8' } })
  await expect(plain, 'createSegments', 'LocalCallerRequired', { method: 'POST', url: '/v1/segments', payload: { namespace: 'tcp', release_on_exit: true, tensors: { k: { shape: [1], dtype: 'uint8' } } } })
  await expect(plain, 'createSegments', 'DuplicateKey', { method: 'POST', url: '/v1/segments', payload: { namespace: 'dup', tensors: { k: { shape: [1], dtype: 'uint8' } } } })
  await expect(plain, 'createSegments', 'QuotaExceeded', { method: 'POST', url: '/v1/segments', payload: { namespace: 'many', tensors: { k: [{ shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }, { shape: [1], dtype: 'uint8' }] } } })
  await expect(plain, 'createSegments', 'InsufficientStorage', { method: 'POST', url: '/v1/segments', payload: { namespace: 'huge', tensors: { k: { shape: [2 ** 40], dtype: 'uint8' } } } })
  await expect(plain, 'listSegments', 'InvalidRequest', { url: '/v1/segments?namespace=a//b' })
  await expect(plain, 'releaseNamespace', 'InvalidRequest', { method: 'DELETE', url: '/v1/segments' })
  await expect(plain, 'renew', 'InvalidRequest', { method: 'POST', url: '/v1/renew', payload: {} })
  for (const op of ['getSegment', 'releaseSegment', 'readTensor', 'writeTensor']) {
    await badUrl(op, op.endsWith('Tensor') ? '/v1/segments/%ZZ/data' : '/v1/segments/%ZZ')
    await expect(plain, op, 'InvalidName', OPERATIONS[op]?.('not-ours') ?? {})
    await expect(plain, op, 'SegmentNotFound', OPERATIONS[op]?.(unknown) ?? {})
  }
  await expect(plain, 'decode', 'InvalidRequest', { method: 'POST', url: '/v1/decode', headers: { ...json, 'content-length': '50' }, payload: '{"a":1}' })
  await expect(plain, 'decode', 'InvalidName', OPERATIONS.decode?.('not-ours') ?? {})
  await expect(plain, 'decode', 'SegmentNotFound', OPERATIONS.decode?.(unknown) ?? {})
  await expect(plain, 'decode', 'InvalidDescriptor', { method: 'POST', url: '/v1/decode', payload: [1] })
  await expect(plain, 'decode', 'LimitExceeded', { method: 'POST', url: '/v1/decode', payload: { a: 1, b: 2, c: 3, d: 4, e: 5 } })
  await expect(plain, 'decode', 'SpecMismatch', { method: 'POST', url: '/v1/decode', payload: { x: { name: x, shape: [4, 4], dtype: 'float64' } } })
  const pickle = { 'content-type': 'application/x-python-pickle' }
  await expect(plain, 'decode', 'InvalidPickle', { method: 'POST', url: '/v1/decode', headers: pickle, payload: Buffer.from([0x80, 0x04, 0xff]) })
  await expect(plain, 'decode', 'PickleRefused', { method: 'POST', url: '/v1/decode', headers: pickle, payload: Buffer.from('\x80\x02cos\nsystem\n.', 'latin1') })
  for (const op of ['readTensor', 'decode', 'createSegments']) await expect(plain, op, 'NotAcceptable', { ...OPERATIONS[op]?.(x), headers: { accept: 'text/html' } })
  const npy = (dtype: NonNullable<typeof f32>, shape: number[]) => Buffer.concat([npyHeader(dtype, shape), Buffer.alloc(64)])
  const put = (body: Buffer | Readable, type = 'application/x-npy'): InjectOptions => ({ method: 'PUT', url: `/v1/segments/${x}/data`, headers: { 'content-type': type }, payload: body })
  await expect(plain, 'writeTensor', 'LengthRequired', put(Readable.from([Buffer.alloc(64)]), 'application/octet-stream'))
  await expect(plain, 'writeTensor', 'LengthMismatch', put(Buffer.alloc(63), 'application/octet-stream'))
  await expect(plain, 'writeTensor', 'InvalidNpy', put(Buffer.from('not an npy file, not at all')))
  await expect(plain, 'writeTensor', 'SpecMismatch', put(npy(f64, [4, 4])))
  await expect(plain, 'writeTensor', 'UnsupportedMediaType', put(Buffer.alloc(64), 'text/plain'))

  // What others do to the files: truncated, unlinked, or too many open at once.
  for (const op of ['readTensor', 'writeTensor', 'decode']) {
    const cut = await victim(plain, `cut/${op}`)
    truncateSync(`/dev/shm/${cut}`, 8)
    await expect(plain, op, 'SegmentTruncated', OPERATIONS[op]?.(cut) ?? {})
    const gone = await victim(plain, `gone/${op}`)
    unlinkSync(`/dev/shm/${gone}`)
    await expect(plain, op, 'SegmentGone', OPERATIONS[op]?.(gone) ?? {})
    const held = plain.segments.open(plain.segments.find(x, OPERATOR), false)
    try {
      await expect(plain, op, 'Busy', OPERATIONS[op]?.(await victim(plain, `busy/${op}`)) ?? {})
    } finally {
      held.close()
    }
  }

  // What every /v1 operation meets before its own checks: keys, the rate limit, load shedding, closing.
  const keyed = await build(t, { ...base, TENSORSHM_API_KEYS: `${KEY_A},${KEY_B}`, TENSORSHM_AUTH_METRICS: 'true' })
  await create(keyed, 'theirs/a', { k: { shape: [1], dtype: 'uint8' } }, { headers: { authorization: `Bearer ${KEY_A}` } })
  await expect(keyed, 'createSegments', 'NamespaceForbidden', { method: 'POST', url: '/v1/segments', headers: { authorization: `Bearer ${KEY_B}` }, payload: { namespace: 'theirs/b', tensors: { k: { shape: [1], dtype: 'uint8' } } } })
  const limited = await build(t, { ...base, TENSORSHM_RATE_LIMIT: '1' })
  const shedding = await build(t, { ...base, TENSORSHM_MAX_EVENT_LOOP_DELAY: '20' })
  const closing = await build(t, base)
  closing.segments.stopAccepting()
  for (const [op, request] of Object.entries(OPERATIONS)) {
    const options = request(x)
    if (op !== 'readyz') await expect(keyed, op, 'Unauthorized', options)
    if (!['readyz', 'metrics'].includes(op)) {
      await limited.inject(options)
      await expect(limited, op, 'RateLimited', options)
    }
    await expect(closing, op, 'ShuttingDown', options)
  }
  // The lag is sampled once a second: hog the loop, then ask every operation before the next sample clears it.
  const pending = new Set(Object.keys(OPERATIONS))
  await poll('every operation shedding load', async () => {
    for (const until = Date.now() + 300; Date.now() < until;) { /* a handler hogging the event loop */ }
    await sleep(10)
    for (const op of [...pending]) {
      const res = await shedding.inject(OPERATIONS[op]?.(x) ?? {})
      if (res.statusCode === 503) { check(op, 'Overloaded', res); pending.delete(op) }
    }
    if (pending.size > 0) throw new Error(`not yet: ${[...pending].join(', ')}`)
  }, { timeoutMs: 30_000, intervalMs: 1 })

  const documented = new Map(routesOf(plain))
  for (const [op, codes] of documented) {
    const provoked = [...(seen.get(op) ?? [])].sort()
    t.same(provoked, codes.filter((c) => !UNPROVOKABLE.includes(c) && !(SOCKET_ONLY[op] ?? []).includes(c)).sort(), `${op}: the errors it documents, each provoked`)
  }
  t.same([...documented.keys()].sort(), [...Object.keys(OPERATIONS), 'healthz'].sort(), 'every operation is covered')
  await plain.inject({ method: 'DELETE', url: '/v1/segments?namespace=fixture' })
  for (const ns of ['dup', 'cut', 'gone', 'busy']) await plain.inject({ method: 'DELETE', url: `/v1/segments?namespace=${ns}` })
  await keyed.inject({ method: 'DELETE', url: '/v1/segments?namespace=theirs', headers: { authorization: `Bearer ${KEY_A}` } })
})

/** Each documented operation of the app, with the TSHM_* codes its OpenAPI entry lists. */
function routesOf (app: FastifyInstance): Array<[string, string[]]> {
  const doc = app.swagger() as { paths: Record<string, Record<string, { operationId?: string, responses?: Record<number, unknown> }>> }
  return Object.values(doc.paths).flatMap((ops) => Object.values(ops))
    .filter((op) => op.operationId !== undefined)
    .map((op) => [op.operationId as string, documentedErrors(op.responses).map((n) => errorInfo(n).code)])
}

checkNoLeftovers(t, prefix)
