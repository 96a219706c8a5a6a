// A real Prometheus server (Debian's) scrapes the compiled service on 127.0.0.1 with the project's own alert rules
// loaded: the segment figures arrive as created, and the shipped rules load and evaluate in a real server.
import t, { type Test } from 'tap'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { api, freePort, spawnProc, tempDir, which, type Proc } from './helpers/e2e.js'
import { GiveUp, poll, root, startService } from './helpers/server.js'

const RULES = join(root, 'deploy', 'prometheus', 'rules', 'tensorshm.rules.yml')
const JOB = 'tensorshm'

const prefix = suitePrefix('prometheus')

interface Sample { metric: Record<string, string>, value: [number, string] }
interface ApiRule { name: string, type: 'alerting' | 'recording', health: string, state?: string, lastError?: string }
interface ApiGroup { name: string, file: string, rules: ApiRule[] }
interface RuleFile { groups: Array<{ name: string, rules: Array<{ alert?: string, record?: string }> }> }

/** GET on Prometheus's HTTP API; the `data` of a successful answer. */
async function promApi<T> (base: string, path: string): Promise<T> {
  const res = await fetch(base + path, { signal: AbortSignal.timeout(5_000) })
  const body = await res.json() as { status: string, data?: T, error?: string }
  if (body.status !== 'success' || body.data === undefined) throw new Error(`${path}: ${res.status} ${body.error ?? ''}`)
  return body.data
}

/** Starts Prometheus on a free loopback port with `config`; retried on another port if that one was taken meanwhile. */
async function startPrometheus (t: Test, bin: string, dir: string, config: string): Promise<{ base: string, proc: Proc }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const proc = spawnProc(t, bin, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { cwd: dir })
    const base = `http://127.0.0.1:${port}`
    try {
      await poll('Prometheus ready', async () => {
        if (!proc.running()) throw new GiveUp(`prometheus exited with ${await proc.exited}: ${proc.output()}`)
        const res = await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(2_000) })
        if (res.status !== 200) throw new Error(`/-/ready answered ${res.status}`)
      }, { timeoutMs: 30_000 })
      return { base, proc }
    } catch (err) {
      await proc.stop()
      if (attempt < 3 && /address already in use/.test(proc.output())) continue
      throw err
    }
  }
}

const prometheus = which('prometheus')
if (prometheus === undefined) {
  t.fail('prometheus missing: run scripts/install-test-deps.sh (no prometheus on PATH)')
} else {
  t.test('a real Prometheus scrapes the service and loads the shipped alert rules', async (t) => {
    const server = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t) })
    const target = new URL(server.url).host

    await t.test('five segments in two namespaces, one released: four live', async (t) => {
      const a = await api(server.url, 'POST', '/v1/segments', { namespace: 'prom/a', tensors: { x: { shape: [8], dtype: 'uint8' }, y: [{ shape: [2, 2], dtype: 'float32' }, { shape: [3], dtype: 'int16' }] } })
      t.equal(a.status, 201, 'three in prom/a')
      const b = await api(server.url, 'POST', '/v1/segments', { namespace: 'prom/b', tensors: { u: { shape: [4], dtype: 'uint8' }, v: { shape: [1], dtype: 'float64' } } })
      t.equal(b.status, 201, 'two in prom/b')
      const x = (a.body.segments as Record<string, { name: string }>).x?.name ?? ''
      t.equal((await api(server.url, 'DELETE', `/v1/segments/${x}`)).status, 204, 'one released by the client')
      t.equal(((await api(server.url, 'GET', '/v1/segments')).body.segments as unknown[]).length, 4, 'four listed by the API')
      t.notOk(existsSync(`/dev/shm/${x}`), 'the released name is gone from /dev/shm')
    })

    const dir = tempDir(t, 'prometheus')
    const config = join(dir, 'prometheus.yml')
    writeFileSync(config, stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: JOB, static_configs: [{ targets: [target] }] }]
    }))
    const prom = await startPrometheus(t, prometheus, dir, config)

    await t.test('Prometheus scrapes the figures the service was given', async (t) => {
      const value = async (expr: string): Promise<number | undefined> => {
        const found = (await promApi<{ result: Sample[] }>(prom.base, `/api/v1/query?query=${encodeURIComponent(expr)}`)).result
          .filter((s) => s.metric.job === JOB && s.metric.instance === target)
        if (found.length > 1) throw new GiveUp(`${expr}: ${found.length} samples for one target`)
        return found[0] === undefined ? undefined : Number(found[0].value[1])
      }
      const exprs = ['tensorshm_segments', 'up', 'tensorshm_allocations_total', 'tensorshm_releases_total{reason="client"}']
      const want = [4, 1, 5, 1]
      const got = await poll('tensorshm_segments in Prometheus', async () => {
        const now = await Promise.all(exprs.map(value))
        if (now.some((v, i) => v !== want[i])) throw new Error(`${exprs.map((e, i) => `${e} = ${String(now[i])}`).join(', ')}`)
        return now
      }, { timeoutMs: 60_000, intervalMs: 500 })
      t.equal(got[0], 4, 'tensorshm_segments: four live')
      t.equal(got[1], 1, `up{job="${JOB}"} is 1`)
      t.equal(got[2], 5, 'tensorshm_allocations_total: five made')
      t.equal(got[3], 1, 'tensorshm_releases_total{reason="client"}: one released')
    })

    await t.test('the shipped rules load and their alerts evaluate without error', async (t) => {
      const shipped = parse(readFileSync(RULES, 'utf8')) as RuleFile
      const groups = await poll('the alert rules evaluated', async () => {
        const got = (await promApi<{ groups: ApiGroup[] }>(prom.base, '/api/v1/rules')).groups
        const alerts = got.find((g) => g.name === 'tensorshm.alerts')
        if (alerts === undefined) throw new Error(`groups: ${got.map((g) => g.name).join(', ')}`)
        const pending = alerts.rules.filter((r) => r.health !== 'ok')
        if (pending.some((r) => r.health === 'err')) throw new GiveUp(`rules in error: ${JSON.stringify(pending)}`)
        if (pending.length > 0) throw new Error(`not yet evaluated: ${pending.map((r) => r.name).join(', ')}`)
        return got
      }, { timeoutMs: 30_000, intervalMs: 500 })
      // The API lists groups in an order of its own; the rules of a group keep the file's order.
      const byName = (a: [string, ...unknown[]], b: [string, ...unknown[]]) => a[0].localeCompare(b[0])
      t.same(groups.map((g): [string, string, string[]] => [g.name, g.file, g.rules.map((r) => r.name)]).sort(byName),
        shipped.groups.map((g): [string, string, Array<string | undefined>] => [g.name, RULES, g.rules.map((r) => r.alert ?? r.record)]).sort(byName),
        'every group and rule of the file')
      const alerts = groups.find((g) => g.name === 'tensorshm.alerts')?.rules ?? []
      t.match(alerts.find((r) => r.name === 'TensorshmLeakedSegments'), { type: 'alerting', health: 'ok', state: 'inactive' },
        'TensorshmLeakedSegments is loaded, evaluates, and is quiet for a service without leaks')
      t.match(alerts.find((r) => r.name === 'TensorshmDown'), { type: 'alerting', health: 'ok', state: 'inactive' }, 'TensorshmDown is quiet while the target is up')
      t.same(groups.flatMap((g) => g.rules).filter((r) => r.health === 'err'), [], 'no rule in error')
    })

    await t.test('Prometheus stops, then the service exits 0 on SIGTERM', async (t) => {
      await prom.proc.stop()
      t.notOk(prom.proc.running(), 'Prometheus is gone')
      server.child.kill('SIGTERM')
      t.equal(await server.exited, 0, 'the service exits 0')
      t.same(shmFiles(prefix), [], 'every segment (and anything kept for reuse) is released at shutdown')
    })
  })
}

checkNoLeftovers(t, prefix)
