import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { ExitWatch } from '../src/segments/exit-watch.js'
import { startTime } from '../native/process.js'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { as, holding, req, socketDir, type Answer } from './helpers/local.js'
import { localGroup, localUser, sandboxUnavailable } from './helpers/sandbox.js'
import { poll, startService } from './helpers/server.js'

type Test = import('tap').Test
const skip = sandboxUnavailable()
const prefix = suitePrefix('exit')
const img = { img: { shape: [4, 4], dtype: 'uint8' } }
const quiet = { debug () {}, info () {}, warn () {}, error () {} }

async function setup (t: Test, extra: Record<string, string> = {}) {
  const dir = socketDir(t)
  const clients = localGroup(t)
  const env = { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t), TENSORSHM_SOCKET: `${dir}/s.sock`, TENSORSHM_SOCKET_GROUP: clients.name, TENSORSHM_SWEEP_INTERVAL: '0.2', ...extra }
  const start = async () => {
    const svc = await startService(t, env)
    t.teardown(async () => { await svc.stop() })
    return svc
  }
  return { env, start, socket: env.TENSORSHM_SOCKET, producer: localUser(t, [clients.name]), other: localUser(t, [clients.name]) }
}

const ownerExits = async (url: string): Promise<number> => ((await (await fetch(`${url}/v1/stats`)).json()) as { releases: { owner_exit: number } }).releases.owner_exit
const nameOf = (a: Answer | undefined): string => Object.values((a?.body as { segments: Record<string, { name: string }> }).segments)[0]?.name as string

t.test('the namespace goes when its creating process exits, and only then', { skip }, async (t) => {
  const { start, socket, producer, other } = await setup(t)
  const svc = await start()
  const holder = await holding(t, producer, socket, req('POST', '/v1/segments', { namespace: 'job-1', tensors: img, release_on_exit: true }))
  t.equal(holder.results[0]?.status, 201)
  const name = nameOf(holder.results[0])
  // More segments in the namespace from another process of the same user: released with the namespace too.
  t.equal(as(producer, socket, req('POST', '/v1/segments', { namespace: 'job-1/extra', tensors: img }))[0]?.status, 201)
  // Other processes come and go, the same user's and another's: the binding is to one process, not to a uid.
  as(other, socket, req('GET', '/v1/segments'))
  as(producer, socket, req('GET', '/v1/segments'))
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.ok(existsSync(`/dev/shm/${name}`), 'still there while its process lives')
  t.equal(await ownerExits(svc.url), 0)

  const exitedAt = Date.now()
  await holder.exit()
  await poll('the namespace to go', async () => { if (shmFiles(prefix).length > 0) throw new Error(shmFiles(prefix).join()) }, { timeoutMs: 1000, intervalMs: 20 })
  t.ok(Date.now() - exitedAt < 1000, 'within a second')
  t.equal(await ownerExits(svc.url), 2, 'counted as owner_exit')
  t.same(as(producer, socket, req('GET', '/v1/segments'))[0]?.body, { segments: [] })
})

t.test('watched processes are capped (TENSORSHM_MAX_BOUND_PROCESSES): past it, 503 and retry, never out of descriptors', { skip }, async (t) => {
  const { start, socket, producer } = await setup(t, { TENSORSHM_MAX_BOUND_PROCESSES: '1' })
  await start()
  const first = await holding(t, producer, socket, req('POST', '/v1/segments', { namespace: 'cap-1', tensors: img, release_on_exit: true }))
  t.equal(first.results[0]?.status, 201)
  const [refused] = as(producer, socket, req('POST', '/v1/segments', { namespace: 'cap-2', tensors: img, release_on_exit: true }))
  t.equal(refused?.status, 503)
  t.match(refused?.body, { code: 'TSHM_BUSY', message: /release_on_exit: 1 processes are watched already.*TENSORSHM_MAX_BOUND_PROCESSES/ })
  t.same(shmFiles(prefix).length, 1, 'and nothing was made for it')
  t.equal(as(producer, socket, req('POST', '/v1/segments', { namespace: 'cap-3', tensors: img }))[0]?.status, 201, 'creates without the binding go on')
  await first.exit()
  await poll('the first namespace to go', async () => { if (shmFiles(prefix).length > 1) throw new Error(shmFiles(prefix).join()) }, { timeoutMs: 2000, intervalMs: 20 })
  t.equal(as(producer, socket, req('POST', '/v1/segments', { namespace: 'cap-2', tensors: img, release_on_exit: true }))[0]?.status, 201, 'a slot is free again')
  as(producer, socket, req('DELETE', '/v1/segments?namespace=cap-3'))
})

t.test('across a SIGKILL of the service: a process gone meanwhile releases at the next start; one still alive is watched again', { skip }, async (t) => {
  const { start, socket, producer } = await setup(t)
  const first = await start()
  const gone = await holding(t, producer, socket, req('POST', '/v1/segments', { namespace: 'gone', tensors: img, release_on_exit: true }))
  const alive = await holding(t, producer, socket, req('POST', '/v1/segments', { namespace: 'alive', tensors: img, release_on_exit: true }))
  const [goneName, aliveName] = [nameOf(gone.results[0]), nameOf(alive.results[0])]
  first.child.kill('SIGKILL')
  await first.exited
  await gone.exit()
  t.ok(existsSync(`/dev/shm/${goneName}`), 'nobody released it while the service was down')

  const second = await start()
  t.notOk(existsSync(`/dev/shm/${goneName}`), 'released at start: its process is gone')
  t.ok(existsSync(`/dev/shm/${aliveName}`), 'kept: its process still runs')
  t.equal(await ownerExits(second.url), 1)
  t.match(second.log(), /replacedStale":true/, 'the stale socket of the killed run was replaced')
  await alive.exit()
  await poll('the live one\'s namespace to go', async () => { if (existsSync(`/dev/shm/${aliveName}`)) throw new Error('still there') }, { timeoutMs: 1000, intervalMs: 20 })
  t.equal(await ownerExits(second.url), 2)
})

t.test('a process is named by pid and start time: a reused pid is not the process that was bound', async (t) => {
  const child = spawn('sleep', ['30'])
  t.teardown(() => { child.kill('SIGKILL') })
  await once(child, 'spawn')
  const pid = child.pid as number
  const start = startTime(pid) as number
  t.type(start, 'number')
  const exits: string[] = []
  const watch = new ExitWatch((namespace) => { exits.push(namespace) }, quiet)
  t.teardown(() => { watch.close() })
  t.equal(watch.restore({ pid, start: start + 1 }, 'reused', 'uid:1'), false, 'another start time: the bound process is gone')
  t.equal(watch.restore({ pid: 2 ** 22 + 1, start }, 'no-such-pid', 'uid:1'), false, 'no such process')
  t.equal(watch.restore({ pid, start }, 'same', 'uid:1'), true, 'the same process: watched again')
  t.equal(watch.size, 1)
  child.kill('SIGKILL')
  await once(child, 'exit')
  watch.check()
  t.same(exits, ['same'])
  t.equal(watch.size, 0, 'its pidfd is closed once it is reported')
})

checkNoLeftovers(t, prefix)
