import t, { type Test } from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { existsSync, readFileSync } from 'node:fs'
import { build, checkNoLeftovers, suitePrefix } from './helpers/build.js'
import { liveFiles, registered, unknownFiles } from './helpers/files.js'

/**
 * Runs test/fixtures/hostile/corpus.json: named hostile requests, one app per distinct `env`. Besides each case's own
 * expectation, every answer is held to the rules that hold for all of them: no 5xx, a well-formed TSHM_* error body
 * without paths or stack traces, a bounded answer in bounded time, /dev/shm untouched by a refused request (and equal
 * to what the service knows after any request), the fixture segment untouched, no built-in object gaining a property,
 * nothing executed, /healthz still answering, a created segment for every key of a create request, and, with API
 * keys, the fixture's name never shown to another key.
 */

interface Expect {
  status: number | number[]
  code?: string
  /** Header name to a regular expression its value must match. */
  headers?: Record<string, string>
  /** Top-level fields the JSON answer must hold exactly. */
  json?: Record<string, unknown>
}

interface Case {
  name: string
  why: string
  env?: Record<string, string>
  request: {
    method: string
    url: string
    headers?: Record<string, string>
    body?: string | object
    bodyBase64?: string
    bodyParts?: Array<[string, number]>
    repeat?: number
  }
  expect: Expect
  todo?: string
}

interface Corpus {
  fixture: { request: { namespace: string, tensors: Record<string, unknown> }, dataBase64: string }
  cases: Case[]
}

const corpus = JSON.parse(readFileSync(new URL('./fixtures/hostile/corpus.json', import.meta.url), 'utf8')) as Corpus
const prefix = suitePrefix('hostile')
/** The fixture's name in binary bodies: overwritten in place, so that pickle length prefixes and frames stay right. */
const SEG_BYTES = '{{SEG}}'.padEnd(36, '~')
const PWNED = '/tmp/tshm-pwned'
const MAX_ANSWER = 1024 * 1024
const MAX_MS = 2000
/** Shedding would turn one slow case into 503s for the next ones; the cases are about the answers, not about load. */
const BASE_ENV = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_MAX_EVENT_LOOP_DELAY: '0' }

interface Context { app: FastifyInstance, seg: string, owner: string | undefined, data: Buffer }

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

function expand (text: string, ctx: Context): string {
  return text
    .replace(/\{\{repeat:(\d+):([^}]*)\}\}/g, (_, n: string, unit: string) => unit.repeat(Number(n)))
    .replaceAll('{{SEG}}', ctx.seg)
    .replaceAll('{{PREFIX}}', prefix)
}

function expandDeep (v: unknown, ctx: Context): unknown {
  if (typeof v === 'string') return expand(v, ctx)
  if (Array.isArray(v)) return v.map((x) => expandDeep(x, ctx))
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [expand(k, ctx), expandDeep(x, ctx)]))
  return v
}

function payloadOf (request: Case['request'], ctx: Context): { payload?: string | Buffer, type?: string } {
  if (request.bodyBase64 !== undefined) {
    if (ctx.seg.length !== SEG_BYTES.length) throw new Error(`the fixture name ${ctx.seg} is not ${SEG_BYTES.length} characters`)
    const body = Buffer.from(request.bodyBase64, 'base64')
    const from = Buffer.from(SEG_BYTES, 'latin1')
    for (let at = body.indexOf(from); at >= 0; at = body.indexOf(from, at)) body.write(ctx.seg, at, 'latin1')
    return { payload: body }
  }
  if (request.bodyParts !== undefined) {
    return { payload: request.bodyParts.map(([text, n]) => Array.from({ length: n }, (_, i) => text.replaceAll('{{i}}', String(i))).join('')).join('') }
  }
  if (typeof request.body === 'string') return { payload: expand(request.body, ctx) }
  if (request.body !== undefined) return { payload: JSON.stringify(expandDeep(request.body, ctx)), type: 'application/json' }
  return {}
}

/** Everything the service answers with an error: JSON, its own code, the status repeated, and nothing of its insides. */
function checkErrorBody (t: Test, res: LightMyRequestResponse, url: string): Record<string, unknown> | undefined {
  let body: unknown
  try {
    body = JSON.parse(res.body)
  } catch {
    t.fail(`a ${res.statusCode} whose body is not JSON: ${res.body.slice(0, 200)}`)
    return undefined
  }
  if (!isObject(body)) {
    t.fail('the error body is not an object')
    return undefined
  }
  t.match(res.headers['content-type'], /^application\/json/, 'the error is JSON')
  t.equal(body.statusCode, res.statusCode, 'statusCode repeats the HTTP status')
  t.match(body.code, /^TSHM_[A-Z_]+$/, 'a TSHM_* code')
  t.type(body.error, 'string', 'error is a string')
  t.type(body.message, 'string', 'message is a string')
  const message = String(body.message)
  t.notOk(message.includes(process.cwd()), 'no source path in the message')
  t.notMatch(message, /node_modules|tshm-state-|\.[cm]?[jt]s:\d+|\n\s*at /, 'no path or stack trace in the message')
  if (!url.includes('/dev/shm')) t.notOk(message.includes('/dev/shm'), 'no /dev/shm path in the message')
  return body
}

/** Own property names of Object, Array, Function and their prototypes, and of every function on those prototypes. */
function builtins (): string {
  const roots: object[] = [Object, Array, Function, Object.prototype, Array.prototype, Function.prototype]
  const all = [...roots, ...roots.flatMap((r) => Object.values(Object.getOwnPropertyDescriptors(r)).map((d) => d.value as unknown).filter((v): v is object => typeof v === 'function'))]
  return JSON.stringify(all.map((o) => Reflect.ownKeys(o).map(String).sort()))
}

async function runCase (t: Test, c: Case, ctx: Context): Promise<void> {
  const { app } = ctx
  const url = expand(c.request.url, ctx)
  const headers: Record<string, string> = Object.fromEntries(Object.entries(c.request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), expand(v, ctx)]))
  const { payload, type } = payloadOf(c.request, ctx)
  if (type !== undefined && headers['content-type'] === undefined) headers['content-type'] = type
  const options: InjectOptions = { method: c.request.method as InjectOptions['method'], url, headers, ...(payload === undefined ? {} : { payload }) }

  const before = liveFiles(app, prefix)
  const proto = builtins()
  const t0 = performance.now()
  let res: LightMyRequestResponse | undefined
  for (let i = 0; i < (c.request.repeat ?? 1); i++) res = await app.inject(options)
  const ms = performance.now() - t0
  if (res === undefined) throw new Error('no request was sent')

  const statuses = [c.expect.status].flat()
  t.ok(statuses.includes(res.statusCode), `status ${res.statusCode}, expected ${statuses.join(' or ')}: ${res.body.slice(0, 300)}`)
  t.ok(res.statusCode < 500, 'never a 5xx')
  const body = res.statusCode >= 400 ? checkErrorBody(t, res, url) : undefined
  if (c.expect.code !== undefined) t.equal(body?.code, c.expect.code, 'code')
  for (const [name, pattern] of Object.entries(c.expect.headers ?? {})) t.match(res.headers[name], new RegExp(pattern), `header ${name}`)
  if (c.expect.json !== undefined) {
    const answer: unknown = res.json()
    for (const [k, v] of Object.entries(c.expect.json)) t.same(isObject(answer) ? answer[k] : undefined, v, `answer.${k}`)
  }
  t.ok(res.rawPayload.length <= MAX_ANSWER, `the answer (${res.rawPayload.length} bytes) stays under ${MAX_ANSWER} bytes`)
  t.ok(ms < MAX_MS, `answered in ${Math.round(ms)} ms (under ${MAX_MS} ms)`)

  if (ctx.owner !== undefined && headers.authorization !== `Bearer ${ctx.owner}`) {
    const shown = res.body + JSON.stringify(res.headers)
    t.notOk(shown.includes(ctx.seg), 'another key never sees the fixture\'s name')
  }

  t.same(unknownFiles(app, prefix), [], '/dev/shm holds nothing the service does not account for')
  t.same([...registered(app)].sort(), liveFiles(app, prefix), 'and every registered segment is there')
  if (res.statusCode >= 400) t.same(liveFiles(app, prefix), before, 'a refused request leaves /dev/shm as it found it')
  t.ok(registered(app).has(ctx.seg), 'the fixture is still registered')
  t.same(readFileSync(`/dev/shm/${ctx.seg}`), ctx.data, 'the fixture\'s bytes are unchanged')
  t.equal(builtins(), proto, 'no built-in object gained a property')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no polluted property')
  if (c.request.method === 'POST' && url === '/v1/segments' && res.statusCode === 201 && typeof payload === 'string') {
    const asked = (JSON.parse(payload) as { tensors: Record<string, unknown> }).tensors
    const answered = (res.json() as { segments: Record<string, unknown> }).segments
    t.same(Object.keys(answered).sort(), Object.keys(asked).sort(), 'the answer has a descriptor for every key asked for')
    for (const [k, v] of Object.entries(asked)) if (Array.isArray(v)) t.equal([answered[k]].flat().length, v.length, `${k}: one descriptor per spec`)
  }
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200, '/healthz still answers')
}

/** The segment every case may aim at: created (by the first key, when there are keys) and filled once. */
async function fixture (app: FastifyInstance, owner: string | undefined): Promise<Context> {
  const auth: Record<string, string> = owner === undefined ? {} : { authorization: `Bearer ${owner}` }
  const created = await app.inject({ method: 'POST', url: '/v1/segments', headers: auth, payload: corpus.fixture.request })
  if (created.statusCode !== 201) throw new Error(`fixture: ${created.body}`)
  const seg = (created.json() as { segments: Record<string, { name: string }> }).segments.x?.name
  if (seg === undefined) throw new Error('fixture: no segment x')
  const data = Buffer.from(corpus.fixture.dataBase64, 'base64')
  const written = await app.inject({ method: 'PUT', url: `/v1/segments/${seg}/data`, headers: { ...auth, 'content-type': 'application/octet-stream' }, payload: data })
  if (written.statusCode !== 204) throw new Error(`fixture: ${written.body}`)
  return { app, seg, owner, data }
}

const pwnedBefore = existsSync(PWNED)
const groups = new Map<string, { env: Record<string, string>, cases: Case[] }>()
for (const c of corpus.cases) {
  const env = c.env ?? {}
  const key = JSON.stringify(Object.entries(env).sort())
  const group = groups.get(key) ?? { env, cases: [] }
  group.cases.push(c)
  groups.set(key, group)
}

t.test('the corpus is well formed', async (t) => {
  t.ok(corpus.cases.length >= 60, `${corpus.cases.length} cases`)
  t.equal(new Set(corpus.cases.map((c) => c.name)).size, corpus.cases.length, 'case names are unique')
  for (const c of corpus.cases) {
    t.ok(c.why.length > 0 && c.request.url.startsWith('/'), c.name)
    const bodies = [c.request.body, c.request.bodyBase64, c.request.bodyParts].filter((b) => b !== undefined)
    t.ok(bodies.length <= 1, `${c.name}: at most one body`)
  }
})

for (const { env, cases } of groups.values()) {
  const label = Object.keys(env).length === 0 ? 'default' : Object.entries(env).map(([k, v]) => `${k}=${k.includes('KEYS') ? '<keys>' : v}`).join(' ')
  t.test(`${cases.length} hostile requests, env: ${label}`, async (t) => {
    const app = await build(t, { ...BASE_ENV, ...env })
    const owner = env.TENSORSHM_API_KEYS?.split(',')[0]
    const ctx = await fixture(app, owner)
    for (const c of cases) {
      await t.test(c.name, c.todo === undefined ? {} : { todo: c.todo }, async (t) => { await runCase(t, c, ctx) })
    }
  })
}

t.test('a pickled dict key __proto__ is data like any other key', async (t) => {
  const app = await build(t, BASE_ENV)
  // pickle.dumps({'__proto__': {'a': 1}, 'y': {'__proto__': [1]}}, protocol=4)
  const pickle = Buffer.from('80049528000000000000007d94288c095f5f70726f746f5f5f947d948c0161944b01738c0179947d9468015d944b016173752e', 'hex')
  const asJson = await app.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/x-python-pickle' }, payload: pickle })
  t.equal(asJson.statusCode, 200)
  t.equal(asJson.body, '{"__proto__":{"a":1},"y":{"__proto__":[1]}}', 'the JSON answer keeps both values')
  const asNpz = await app.inject({ method: 'POST', url: '/v1/decode', headers: { 'content-type': 'application/x-python-pickle', accept: 'application/x-npz' }, payload: pickle })
  t.equal(asNpz.statusCode, 200)
  t.ok(asNpz.rawPayload.includes('{"__proto__":{"a":1},"y":{"__proto__":[1]}}'), 'the NPZ __passthrough__ member keeps both values')
})

t.test('no pickle ever ran a command', async (t) => {
  t.equal(existsSync(PWNED), pwnedBefore, `${PWNED} was not created`)
})

checkNoLeftovers(t, prefix)
