import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as shm from '../native/shm.js'
import { checkNoLeftovers, shmFiles, suitePrefix } from './helpers/build.js'
import { api } from './helpers/e2e.js'
import { poll, runService, startService } from './helpers/server.js'

const prefix = suitePrefix('restart')
const otherPrefix = suitePrefix('restart_other')

const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'tshm-restart-'))
  t.teardown(() => { rmSync(d, { recursive: true, force: true }) })
  return d
}
const start = async (tt: Test, env: Record<string, string>) => {
  return await startService(tt, { TENSORSHM_SWEEP_INTERVAL: '3600', ...env })
}

t.test('after SIGKILL and a restart, every live segment is known again with its namespace, key, spec and lease', async (t) => {
  const state = dir()
  const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: state }
  const a = await start(t, env)
  const made = await api(a.url, 'POST', '/v1/segments', { namespace: 'keep/a', ttl_seconds: 300, tensors: { img: [{ shape: [2, 3], dtype: 'float32' }, { shape: [4], dtype: '>u2' }], gone: { shape: [8], dtype: 'uint8' }, freed: { shape: [1], dtype: 'uint8' } } })
  t.equal(made.status, 201)
  const segs = made.body.segments as Record<string, { name: string } | Array<{ name: string }>>
  const names = (k: string) => [segs[k]].flat().map((d) => (d as { name: string }).name)
  await api(a.url, 'POST', '/v1/segments', { namespace: 'keep/forever', ttl_seconds: 0, tensors: { x: { shape: [1], dtype: 'bool' } } })
  await api(a.url, 'POST', '/v1/renew', { namespace: 'keep/forever', ttl_seconds: 900 })
  t.equal((await api(a.url, 'DELETE', `/v1/segments/${names('freed')[0]}`)).status, 204)
  const before = (await api(a.url, 'GET', '/v1/segments')).body.segments as Array<Record<string, unknown>>
  a.child.kill('SIGKILL')
  t.equal(await a.exited, 'SIGKILL')
  t.equal(shmFiles(prefix).length, 5, 'nothing was unlinked by the kill: 4 live segments, 1 released and kept for reuse')

  shm.unlink(names('gone')[0] ?? '')
  const b = await start(t, env)
  const after = (await api(b.url, 'GET', '/v1/segments')).body.segments as Array<Record<string, unknown>>
  const byName = (xs: Array<Record<string, unknown>>) => Object.fromEntries(xs.map((x) => [x.name, x]))
  const expected = byName(before.filter((x) => x.name !== names('gone')[0]))
  t.same(byName(after), expected, 'namespace, key, index, shape, dtype, created_at, ttl and expires_at all came back')
  t.equal(after.find((x) => x.namespace === 'keep/forever')?.ttl_seconds, 900, 'the renewal survived too')
  const metrics = await (await fetch(`${b.url}/metrics`)).text()
  t.match(metrics, /tensorshm_releases_total\{reason="vanished"\} 1/, 'the vanished record was dropped and counted')
  t.match(metrics, /tensorshm_segments 3/)
  t.match(b.log(), /"recovered":3,"vanished":1/)
  t.same(shmFiles(prefix).sort(), after.map((x) => x.name).sort(), 'the file kept for reuse did not outlive its process')
  b.child.kill('SIGTERM')
  t.equal(await b.exited, 0)
  t.same(shmFiles(prefix), [], 'a graceful stop after the restart releases them')
})

t.test('two instances on one /dev/shm with separate state never touch each other\'s segments', async (t) => {
  const sweeping = { TENSORSHM_SWEEP_INTERVAL: '0.2', TENSORSHM_POOL_BYTES: '0' }
  const same = await start(t, { ...sweeping, TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: dir() })
  const twin = await start(t, { ...sweeping, TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: dir() })
  const other = await start(t, { ...sweeping, TENSORSHM_SEGMENT_PREFIX: otherPrefix, TENSORSHM_STATE_DIR: dir() })
  for (const s of [same, twin, other]) {
    t.equal((await api(s.url, 'POST', '/v1/segments', { namespace: 'shared', ttl_seconds: 0, tensors: { x: { shape: [16], dtype: 'uint8' } } })).status, 201)
  }
  const mine = (await api(same.url, 'GET', '/v1/segments')).body.segments as Array<{ name: string }>
  const theirs = (await api(twin.url, 'GET', '/v1/segments')).body.segments as Array<{ name: string }>
  t.equal(mine.length, 1)
  t.equal(theirs.length, 1)
  t.equal((await api(same.url, 'GET', `/v1/segments/${theirs[0]?.name ?? ''}`)).status, 404, 'a twin\'s segment is not ours to see')
  t.equal((await api(same.url, 'DELETE', `/v1/segments/${theirs[0]?.name ?? ''}`)).status, 404, 'nor to release')
  await poll('the twin\'s file counted as an orphan', async () => {
    const metrics = await (await fetch(`${same.url}/metrics`)).text()
    if (!/tensorshm_leaked_segments\{kind="orphan"\} 1\n/.test(metrics)) throw new Error(/tensorshm_leaked_segments\{kind="orphan"\} .*/.exec(metrics)?.[0])
  }, { timeoutMs: 10_000, intervalMs: 100 })
  // Leases run out: each sweeps only its own.
  for (const s of [same, twin]) {
    t.equal((await api(s.url, 'POST', '/v1/segments', { namespace: 'short', ttl_seconds: 1, tensors: { x: { shape: [16], dtype: 'uint8' } } })).status, 201)
  }
  await poll('both short leases reclaimed, each by its own instance', async () => {
    for (const s of [same, twin]) if (((await api(s.url, 'GET', '/v1/segments?namespace=short')).body.segments as unknown[]).length !== 0) throw new Error('not yet')
  }, { timeoutMs: 10_000, intervalMs: 100 })
  t.same(shmFiles(prefix).sort(), [mine[0]?.name, theirs[0]?.name].sort(), 'the leases that never end are still there, both of them')
  same.child.kill('SIGTERM')
  await same.exited
  t.same(shmFiles(prefix), [theirs[0]?.name], 'the twin\'s segment is still there')
  t.equal(shmFiles(otherPrefix).length, 1)
  twin.child.kill('SIGTERM')
  other.child.kill('SIGTERM')
  t.equal(await twin.exited, 0)
  t.equal(await other.exited, 0)
  t.same(shmFiles(prefix), [])
  t.same(shmFiles(otherPrefix), [])
})

t.test('a second instance on the same state directory refuses to start, naming the fix', async (t) => {
  const state = dir()
  const first = await start(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: state })
  const second = await runService({ TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: state, TENSORSHM_PORT: '0' })
  t.equal(second.code, 1)
  t.match(second.output, /another tensorshm instance holds .*TENSORSHM_STATE_DIR/)
  first.child.kill('SIGTERM')
  t.equal(await first.exited, 0)
})

checkNoLeftovers(t, prefix)
checkNoLeftovers(t, otherPrefix)
