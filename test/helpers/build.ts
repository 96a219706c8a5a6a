import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import app, { serverOptions } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { errorInfo } from '../../src/errors.js'
import { documentedErrors } from '../../routes/error-responses.js'
import { Journal } from '../../src/journal/journal.js'
import { StateDir } from '../../src/journal/state-dir.js'

type Test = import('tap').Test

/** A segment prefix of the suite's own, so that its leftovers (if any) are told apart from everyone else's. */
export function suitePrefix (tag: string): string {
  const prefix = `tshm_${tag}_${randomBytes(3).toString('hex')}_`
  // A failed run must not leave files for the next one; the final subtest still reports them.
  process.once('exit', () => { for (const f of shmFiles(prefix)) unlinkSync(`/dev/shm/${f}`) })
  return prefix
}

export function shmFiles (prefix: string): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith(prefix)).sort()
}

/**
 * Registers the app the way server.ts does, ready, closed on teardown. Every error it answers in any suite is
 * checked against the codes its route documents: an undocumented one fails the test that met it.
 */
export async function build (t: Test, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadConfig({ TENSORSHM_LOG_LEVEL: 'silent', TENSORSHM_STATE_DIR: stateDir(t), ...env })
  const fastify = Fastify(serverOptions(config))
  fastify.addHook('onSend', async (request, reply, payload) => {
    const response = (request.routeOptions.schema as { response?: Record<number, unknown> } | undefined)?.response
    if (reply.statusCode < 400 || request.routeOptions.url === undefined || response === undefined || typeof payload !== 'string') return payload
    const code = (JSON.parse(payload) as { code?: string }).code ?? ''
    const documented = documentedErrors(response).map((n) => errorInfo(n).code)
    if (!documented.includes(code)) t.fail(`${request.method} ${request.routeOptions.url} answered ${reply.statusCode} ${code}, which its OpenAPI entry does not document (${documented.join(', ')})`)
    return payload
  })
  await fastify.register(app, { config })
  await fastify.ready()
  t.teardown(() => fastify.close())
  return fastify
}

export interface Descriptor { name: string, shape: number[], dtype: string, nbytes: number }
export interface PostOptions { headers?: Record<string, string>, ttl_seconds?: unknown }

/** POST /v1/segments, answered however the service answers it. */
export async function post (app: FastifyInstance, namespace: string, tensors: object, { headers = {}, ...extra }: PostOptions = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/v1/segments', headers, payload: { namespace, tensors, ...extra } })
}

/** POST /v1/segments that must succeed: the descriptors by key. */
export async function create<D = Descriptor> (app: FastifyInstance, namespace: string, tensors: object, options: PostOptions = {}): Promise<Record<string, D>> {
  const res = await post(app, namespace, tensors, options)
  if (res.statusCode !== 201) throw new Error(`create in ${namespace}: ${res.statusCode} ${res.body}`)
  return res.json().segments
}

/** A journal directory of the test's own, removed when the test ends. */
export function stateDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tshm-state-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A journal in a state directory of the test's own, for a service built outside the app. */
export function openJournal (t: Test, prefix: string): Journal {
  const journal = Journal.open(StateDir.open(stateDir(t), process.geteuid?.() ?? 0), prefix, (err) => { throw err })
  t.teardown(() => { journal.close(false) })
  return journal
}

/** Descriptors this process has open now. */
export const openFds = (): number => readdirSync('/proc/self/fd').length

/** The last subtest of every suite: nothing with its prefix may remain on /dev/shm. */
export function checkNoLeftovers (t: Test, prefix: string): void {
  t.test(`leaves no ${prefix}* file in /dev/shm`, async (t) => {
    t.same(shmFiles(prefix), [])
  })
}

/** Every warning the app logs from now on, as `<bindings JSON> <message>` lines. */
export function captureWarnings (app: FastifyInstance): string[] {
  const lines: string[] = []
  const warn = app.log.warn.bind(app.log)
  app.log.warn = ((obj: unknown, msg?: string) => {
    lines.push(JSON.stringify(obj) + ' ' + String(msg))
    warn(obj as object, msg)
  }) as typeof app.log.warn
  return lines
}
