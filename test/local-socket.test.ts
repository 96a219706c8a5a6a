import t from 'tap'
type Test = import('tap').Test
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, statSync } from 'node:fs'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { as, req, socketDir, type Answer } from './helpers/local.js'
import { localGroup, localUser, sandboxUnavailable } from './helpers/sandbox.js'
import { startService } from './helpers/server.js'

const skip = sandboxUnavailable()
const prefix = suitePrefix('local')
const img = { img: { shape: [2, 3], dtype: 'uint8' } }

interface Made { segments: Record<string, { name: string, shape: number[], dtype: string }> }

/** The service with its socket open to one group's members (0660), TCP on loopback as well. */
async function service (t: Test) {
  const dir = socketDir(t)
  const clients = localGroup(t)
  const socket = `${dir}/tensorshm.sock`
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t), TENSORSHM_SOCKET: socket, TENSORSHM_SOCKET_GROUP: clients.name })
  t.teardown(async () => { await svc.stop() })
  return { svc, socket, clients }
}

t.test('the socket: 0660, the configured group; a user outside it cannot connect', { skip }, async (t) => {
  const { socket, clients } = await service(t)
  const st = statSync(socket)
  t.equal(st.mode & 0o777, 0o660)
  t.equal(st.gid, clients.gid)
  const outsider = localUser(t)
  t.throws(() => as(outsider, socket, req('GET', '/v1/segments')), /PermissionError/)
})

t.test('two uids on the socket: each sees only its own; the other\'s are answered exactly as unknown names', { skip }, async (t) => {
  const { svc, socket, clients } = await service(t)
  const alice = localUser(t, [clients.name])
  const bob = localUser(t, [clients.name])
  const [made] = as<Answer & { body: Made }>(alice, socket, req('POST', '/v1/segments', { namespace: 'alice-ns/req', tensors: img }))
  t.equal(made?.status, 201)
  const desc = made?.body.segments.img as { name: string, shape: number[], dtype: string }
  t.equal(as(bob, socket, req('POST', '/v1/segments', { namespace: 'bob-ns', tensors: img }))[0]?.status, 201)

  const st = statSync(`/dev/shm/${desc.name}`)
  t.equal(st.uid, alice.uid, 'the file belongs to its creator')
  t.equal(st.gid, alice.gid, 'and to its primary group')
  t.equal(st.mode & 0o777, 0o600, 'mode 0600: nobody else maps it')
  t.same(as(alice, socket, { map: desc.name, write: true })[0], { mapped: true, first: 42 }, 'the creator maps its own segment read-write')
  t.same(as(bob, socket, { map: desc.name })[0], { mapped: false, errno: 13 }, 'another uid gets EACCES')

  const unknown = `${prefix}ffffffffffffffff`
  const pairs: Array<[string, object, object]> = [
    ['describe', req('GET', `/v1/segments/${desc.name}`), req('GET', `/v1/segments/${unknown}`)],
    ['read', req('GET', `/v1/segments/${desc.name}/data`), req('GET', `/v1/segments/${unknown}/data`)],
    ['decode', req('POST', '/v1/decode', { img: desc }), req('POST', '/v1/decode', { img: { ...desc, name: unknown } })],
    ['release one', req('DELETE', `/v1/segments/${desc.name}`), req('DELETE', `/v1/segments/${unknown}`)],
    ['release the namespace', req('DELETE', '/v1/segments?namespace=alice-ns'), req('DELETE', '/v1/segments?namespace=nobody-ns')],
    ['renew', req('POST', '/v1/renew', { namespace: 'alice-ns', ttl_seconds: 0 }), req('POST', '/v1/renew', { namespace: 'alice-ns', ttl_seconds: 0 })],
    ['list the namespace', req('GET', '/v1/segments?namespace=alice-ns'), req('GET', '/v1/segments?namespace=nobody-ns')]
  ]
  for (const [label, theirs, none] of pairs) {
    const [a, b] = as(bob, socket, theirs, none)
    const strip = (x: Answer | undefined) => JSON.parse(JSON.stringify(x).replaceAll(desc.name, 'N').replaceAll(unknown, 'N').replaceAll('nobody-ns', 'alice-ns'))
    t.same(strip(a), strip(b), `${label}: answered as for an unknown name`)
  }
  const bobList = as<Answer & { body: { segments: Array<{ namespace: string }> } }>(bob, socket, req('GET', '/v1/segments'))[0]
  t.same(bobList?.body.segments.map((s) => s.namespace), ['bob-ns'], 'bob lists only his own')
  const aliceList = as<Answer & { body: { segments: Array<{ namespace: string }> } }>(alice, socket, req('GET', '/v1/segments'))[0]
  t.same(aliceList?.body.segments.map((s) => s.namespace), ['alice-ns/req'], 'alice\'s segment is all there, untouched by bob')
  const forbidden = as(bob, socket, req('POST', '/v1/segments', { namespace: 'alice-ns/mine', tensors: img }))[0]
  t.same(forbidden, { status: 403, body: { statusCode: 403, code: 'TSHM_NAMESPACE_FORBIDDEN', error: 'Forbidden', message: 'namespace: "alice-ns" belongs to another user' } })

  // Nothing about alice in what bob (or anyone on TCP) can read.
  const leaks = [
    ...as(bob, socket, req('GET', '/v1/stats'), req('GET', '/metrics')).map((a) => JSON.stringify(a.body)),
    await (await fetch(`${svc.url}/metrics`)).text(),
    await (await fetch(`${svc.url}/v1/stats`)).text(),
    await (await fetch(`${svc.url}/v1/segments`)).text()
  ]
  for (const text of leaks) {
    for (const secret of [desc.name, 'alice-ns', `uid:${alice.uid}`, alice.name]) t.notOk(text.includes(secret), `no ${secret} in ${text.slice(0, 40)}`)
  }
  t.same(JSON.parse(leaks.at(-1) as string), { segments: [] }, 'an anonymous TCP caller sees none of the socket callers\' segments')

  // uid 0 is an admin: it sees and may release everything.
  const adminList = await (async () => as<Answer & { body: { segments: unknown[] } }>({ name: 'root', uid: 0, gid: 0 }, socket, req('GET', '/v1/segments'))[0])()
  t.equal(adminList?.body.segments.length, 2, 'root sees both')
  t.same(as(alice, socket, req('DELETE', '/v1/segments?namespace=alice-ns'))[0]?.body, { released: 1 })
  t.same(as(bob, socket, req('DELETE', '/v1/segments?namespace=bob-ns'))[0]?.body, { released: 1 })
  t.same(shmFiles(prefix), [])
})

t.test('anonymous TCP callers get no room in a user\'s root, and a user\'s claim ends with its own segments', { skip }, async (t) => {
  const { svc, socket, clients } = await service(t)
  const alice = localUser(t, [clients.name])
  const bob = localUser(t, [clients.name])
  const tcp = async (method: string, url: string, body?: object) => {
    const res = await fetch(`${svc.url}${url}`, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) })
    return { status: res.status, body: await res.json() as unknown }
  }
  t.equal(as(alice, socket, req('POST', '/v1/segments', { namespace: 'z/a', tensors: img }))[0]?.status, 201)
  t.same(await tcp('POST', '/v1/segments', { namespace: 'z/t', tensors: img, ttl_seconds: 0 }),
    { status: 403, body: { statusCode: 403, code: 'TSHM_NAMESPACE_FORBIDDEN', error: 'Forbidden', message: 'namespace: "z" belongs to another caller' } })

  // An anonymous segment first, then alice's: when alice releases hers, her claim goes, whatever else is there.
  t.equal((await tcp('POST', '/v1/segments', { namespace: 'y/t', tensors: img, ttl_seconds: 0 })).status, 201)
  t.equal(as(alice, socket, req('POST', '/v1/segments', { namespace: 'y/a', tensors: img }))[0]?.status, 201)
  t.same(as(alice, socket, req('DELETE', '/v1/segments?namespace=y'))[0]?.body, { released: 1 })
  t.equal(as(bob, socket, req('POST', '/v1/segments', { namespace: 'y/b', tensors: img }))[0]?.status, 201, 'the root is free for the next user')
  as(bob, socket, req('DELETE', '/v1/segments?namespace=y'))
  as(alice, socket, req('DELETE', '/v1/segments?namespace=z'))
  t.same(await tcp('DELETE', '/v1/segments?namespace=y'), { status: 200, body: { released: 1 } })
})

t.test('one local user cannot hold every connection: each uid gets a quarter of TENSORSHM_MAX_CONNECTIONS', { skip }, async (t) => {
  const dir = socketDir(t)
  const clients = localGroup(t)
  const socket = `${dir}/tensorshm.sock`
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t), TENSORSHM_SOCKET: socket, TENSORSHM_SOCKET_GROUP: clients.name, TENSORSHM_MAX_CONNECTIONS: '8' })
  t.teardown(async () => { await svc.stop() })
  const mallory = localUser(t, [clients.name])
  const alice = localUser(t, [clients.name])
  // Mallory opens her two and sits on them.
  const hog = spawn('runuser', ['-u', mallory.name, '--', 'python3', '-c',
    `import socket, sys\ns = [socket.socket(socket.AF_UNIX) for _ in range(2)]\nfor c in s: c.connect(${JSON.stringify(socket)})\nprint('held', flush=True)\nsys.stdin.read()`],
  { cwd: '/', stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(hog, 'exit')
  t.teardown(async () => { if (hog.exitCode === null) { hog.kill('SIGKILL'); await exited } })
  await once(hog.stdout as NodeJS.ReadableStream, 'data')
  t.throws(() => as(mallory, socket, req('GET', '/v1/segments')), 'a third connection of hers is closed on arrival')
  t.equal(as(alice, socket, req('GET', '/v1/segments'))[0]?.status, 200, 'another user is still served')
  hog.stdin?.end()
  await exited
  t.equal(as(mallory, socket, req('GET', '/v1/segments'))[0]?.status, 200, 'and hers are counted again once they close')
})

t.test('sharing: a group of the creator\'s reads (or writes, when asked); a third uid cannot map it', { skip }, async (t) => {
  const { socket, clients } = await service(t)
  const readers = localGroup(t)
  const producer = localUser(t, [clients.name, readers.name])
  const consumer = localUser(t, [clients.name, readers.name])
  const third = localUser(t, [clients.name])
  const create = (share: object) => as<Answer & { body: Made }>(producer, socket, req('POST', '/v1/segments', { namespace: 'handoff', tensors: { [`k${Math.random().toString(16).slice(2, 8)}`]: img.img }, share }))[0]
  const read = create({ group: readers.gid })
  t.equal(read?.status, 201)
  const rName = Object.values(read?.body.segments ?? {})[0]?.name as string
  const st = statSync(`/dev/shm/${rName}`)
  t.same([st.uid, st.gid, st.mode & 0o777], [producer.uid, readers.gid, 0o640])
  t.same(as(consumer, socket, { map: rName })[0], { mapped: true, first: 0 }, 'the consumer maps it read-only')
  t.same(as(consumer, socket, { map: rName, write: true })[0], { mapped: false, errno: 13 }, 'but cannot write')
  t.same(as(third, socket, { map: rName })[0], { mapped: false, errno: 13 }, 'a third uid gets EACCES')

  const rw = create({ group: readers.gid, access: 'read-write' })
  const wName = Object.values(rw?.body.segments ?? {})[0]?.name as string
  t.equal(statSync(`/dev/shm/${wName}`).mode & 0o777, 0o660)
  t.same(as(consumer, socket, { map: wName, write: true })[0], { mapped: true, first: 42 }, 'read-write when asked')
  t.same(as(third, socket, { map: wName })[0], { mapped: false, errno: 13 })

  // A group the caller is not in, whatever the request says: the kernel's list decides.
  const notMine = as(third, socket, req('POST', '/v1/segments', { namespace: 'third', tensors: img, share: { group: readers.gid } }))[0]
  t.same(notMine, { status: 403, body: { statusCode: 403, code: 'TSHM_GROUP_FORBIDDEN', error: 'Forbidden', message: `share.group: the calling process is not a member of group ${readers.gid}` } })
  t.same(as(producer, socket, req('DELETE', '/v1/segments?namespace=handoff'))[0]?.body, { released: 2 })
})

t.test('on TCP, share and release_on_exit are refused with a code of their own', { skip }, async (t) => {
  const { svc } = await service(t)
  for (const [field, extra] of [['share', { share: { group: 0 } }], ['release_on_exit', { release_on_exit: true }]] as const) {
    const res = await fetch(`${svc.url}/v1/segments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ namespace: 'tcp', tensors: img, ...extra }) })
    t.equal(res.status, 400)
    const body = await res.json() as { code: string, message: string }
    t.equal(body.code, 'TSHM_LOCAL_CALLER_REQUIRED')
    t.match(body.message, new RegExp(`^${field}: `))
  }
  t.same(shmFiles(prefix), [])
})

t.test('API keys keep working, on TCP and on the socket; TENSORSHM_ADMIN_UIDS see every namespace', { skip }, async (t) => {
  const KEY = 'socket-key-0123456789abcdef'
  const dir = socketDir(t)
  const clients = localGroup(t)
  const alice = localUser(t, [clients.name])
  const auditor = localUser(t, [clients.name])
  const socket = `${dir}/s.sock`
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t), TENSORSHM_SOCKET: socket, TENSORSHM_SOCKET_GROUP: clients.name, TENSORSHM_API_KEYS: KEY, TENSORSHM_ADMIN_UIDS: String(auditor.uid) })
  t.teardown(async () => { await svc.stop() })
  const body = { namespace: 'k', tensors: img }
  const [byUid, byKey, badKey] = as<Answer & { body: Made & { code?: string } }>(alice, socket,
    req('POST', '/v1/segments', { ...body, namespace: 'by-uid' }),
    req('POST', '/v1/segments', { ...body, namespace: 'by-key' }, { authorization: `Bearer ${KEY}` }),
    req('POST', '/v1/segments', body, { authorization: 'Bearer wrong-key-0123456789abcdef' }))
  t.equal(byUid?.status, 201, 'on the socket, no key is needed')
  t.equal(statSync(`/dev/shm/${byUid?.body.segments.img?.name ?? ''}`).uid, alice.uid)
  t.equal(byKey?.status, 201, 'a key sent on the socket is used')
  t.equal(statSync(`/dev/shm/${byKey?.body.segments.img?.name ?? ''}`).uid, 0, 'and then the segment is the service\'s, as for any key caller')
  t.equal(badKey?.status, 401, 'a wrong key is refused, not ignored')
  t.equal((await fetch(`${svc.url}/v1/segments`)).status, 401, 'TCP still needs a key')
  const viaTcp = await (await fetch(`${svc.url}/v1/segments`, { headers: { authorization: `Bearer ${KEY}` } })).json() as { segments: Array<{ namespace: string }> }
  t.same(viaTcp.segments.map((s) => s.namespace), ['by-key'], 'the key sees what it made over the socket, not the uid\'s')
  const audit = as<Answer & { body: { segments: Array<{ namespace: string }> } }>(auditor, socket, req('GET', '/v1/segments'))[0]
  t.same(audit?.body.segments.map((s) => s.namespace).sort(), ['by-key', 'by-uid'], 'an admin uid sees everything')
  t.same(as(auditor, socket, req('DELETE', '/v1/segments?namespace=by-uid'))[0]?.body, { released: 1 }, 'and may release it')
  t.equal((await fetch(`${svc.url}/v1/segments?namespace=by-key`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } })).status, 200)
  // A key caller's released segment may wait in the pool until shutdown; a socket caller's never does.
  await svc.stop()
  t.same(shmFiles(prefix), [])
})

t.test('a service that is not root: its own uid creates over the socket; another uid is told it cannot own segments', { skip }, async (t) => {
  const owner = localUser(t)
  const alice = localUser(t)
  const dir = socketDir(t)
  chownSync(dir, owner.uid, owner.gid)
  const state = stateDir(t)
  chownSync(state, owner.uid, owner.gid)
  const socket = `${dir}/s.sock`
  const svc = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: state, TENSORSHM_SOCKET: socket, TENSORSHM_SOCKET_MODE: '0666' }, { wrap: (argv) => ['runuser', '-u', owner.name, '--', ...argv] })
  t.teardown(async () => { await svc.stop() })
  const refused = as(alice, socket, req('POST', '/v1/segments', { namespace: 'a', tensors: img }))[0]
  t.same(refused, { status: 403, body: { statusCode: 403, code: 'TSHM_OWNERSHIP_UNAVAILABLE', error: 'Forbidden', message: `the service cannot give segments to uid ${alice.uid} (it runs without CAP_CHOWN)` } })
  t.same(shmFiles(prefix), [], 'nothing left of the attempt')
  const mine = as<Answer & { body: Made }>(owner, socket, req('POST', '/v1/segments', { namespace: 'own', tensors: img }))[0]
  t.equal(mine?.status, 201)
  const st = statSync(`/dev/shm/${mine?.body.segments.img?.name ?? ''}`)
  t.same([st.uid, st.mode & 0o777], [owner.uid, 0o600])
  t.same(as(owner, socket, req('DELETE', '/v1/segments?namespace=own'))[0]?.body, { released: 1 })
})

checkNoLeftovers(t, prefix)
