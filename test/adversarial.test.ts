// Another local user owns a shell on the host: it plants symlinks, FIFOs and look-alike files in /dev/shm and in
// the state directory, and the service gets SIGKILLed at the worst moments. Everything here runs in a private
// /dev/shm (a mount namespace of its own), so that a failure cannot touch the machine's.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { api } from './helpers/e2e.js'
import { localUser, sandbox, sandboxUnavailable, type Sandbox } from './helpers/sandbox.js'
import { poll, runService, type Service, sleep, startService } from './helpers/server.js'

const skip = sandboxUnavailable() ?? false

const prefix = 'tshm_adv_'
const uid = process.geteuid?.() ?? 0
const stateDir = `/dev/shm/.tensorshm-${uid}/${prefix}`
const segment = (hex: string) => `${prefix}${hex.padStart(16, '0')}`

async function start (t: Test, box: Sandbox, env: Record<string, string> = {}): Promise<Service> {
  return await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_SWEEP_INTERVAL: '3600', ...env }, { wrap: box.argv })
}
const kill = async (s: Service) => { s.child.kill('SIGKILL'); await s.exited }
const stop = async (s: Service) => { s.child.kill('SIGTERM'); return await s.exited }
const create = async (s: Service, namespace: string, tensors: object, extra: object = {}) => {
  const r = await api(s.url, 'POST', '/v1/segments', { namespace, tensors, ...extra })
  if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.segments as Record<string, { name: string, shape: number[], dtype: string }>
}
const metric = async (s: Service, sample: string): Promise<number | undefined> => {
  const text = await (await fetch(`${s.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? undefined : Number(line.slice(sample.length + 1))
}

t.test('a state directory planted by another user is moved aside by a root service, never entered nor written through', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  writeFileSync(`${box.shm}/victim`, 'precious')
  box.run(['sh', '-c', `mkdir -m 0777 /dev/shm/.tensorshm-${uid} ${stateDir} && chmod 0777 ${stateDir} && ln -s /dev/shm/victim ${stateDir}/journal.jsonl.tmp && ln -s /dev/shm/victim ${stateDir}/journal.jsonl`], mallory.name)
  const s = await start(t, box)
  await create(s, 'aside/a', { x: { shape: [8], dtype: 'uint8' } })
  t.match(s.log(), new RegExp(`"moved":"/dev/shm/\\.tensorshm-${uid} -> /dev/shm/\\.tensorshm-${uid}\\.squatted-[0-9a-f]{8}".*moved it aside`))
  t.equal(readFileSync(`${box.shm}/victim`, 'utf8'), 'precious', 'the file behind the symlinks is untouched')
  const aside = readdirSync(box.shm).filter((f) => f.startsWith(`.tensorshm-${uid}.squatted-`))
  t.equal(aside.length, 1)
  t.equal(box.run(['readlink', `/dev/shm/${aside[0] ?? ''}/${prefix}/journal.jsonl.tmp`]).trim(), '/dev/shm/victim', 'what was planted is left as it was, only out of the way')
  const own = statSync(`${box.shm}/.tensorshm-${uid}`)
  t.same([own.uid, own.mode & 0o7777], [uid, 0o700], 'and the name is the service\'s own now')

  t.equal(await stop(s), 0)
  box.run(['rm', '-rf', `/dev/shm/.tensorshm-${uid}`])
  box.run(['ln', '-s', '/dev/shm', `/dev/shm/.tensorshm-${uid}`], mallory.name)
  const again = await start(t, box)
  t.match(again.log(), /moved it aside/, 'a symlink in its place is moved aside too')
})

t.test('a service that cannot move a squatter aside (not root) stops the start, naming what is in its way', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const svc = localUser(t)
  const theirs = `/dev/shm/.tensorshm-${svc.uid}`
  box.run(['mkdir', '-m', '0777', theirs], mallory.name)
  const { code, output } = await runService({ TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_PORT: '0' }, { wrap: (argv) => box.argv(argv, svc.name) })
  t.equal(code, 1)
  t.match(output, new RegExp(`${theirs.replace(/\./g, '\\.')} \\(owner uid ${mallory.uid}, mode 0777\\) is owned by another user`))
  t.same(box.run(['ls', '-A', theirs]).trim(), '', 'and nothing was made inside it')
})

t.test('a squatter re-creating the name in a loop cannot win the race: the swap leaves no moment the name is free', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const name = `/dev/shm/.tensorshm-${uid}`
  const squat = `import os\nwhile True:\n  for make in (lambda: os.mkdir('${name}', 0o777), lambda: os.symlink('/dev/shm', '${name}'), lambda: os.mkfifo('${name}')):\n    try: make()\n    except OSError: pass`
  const [bin, ...args] = box.argv(['python3', '-c', squat], mallory.name)
  // Its own process group: runuser forks, so the loop is a grandchild that must go with the group.
  const loop = spawn(bin as string, args, { stdio: 'ignore', detached: true })
  const stopLoop = () => { try { process.kill(-(loop.pid ?? 0), 'SIGKILL') } catch {} }
  t.teardown(stopLoop)
  for (let trial = 0; trial < 5; trial++) {
    box.run(['rm', '-rf', name]) // a reboot's worth of /dev/shm, for the squatter to grab again at once
    const s = await start(t, box)
    t.equal((await api(s.url, 'GET', '/healthz')).status, 200, `start ${trial} came up`)
    t.equal(await stop(s), 0)
  }
  stopLoop()
  const own = statSync(`${box.shm}/.tensorshm-${uid}`)
  t.same([own.uid, own.mode & 0o7777], [uid, 0o700])
})

t.test('the state directory stays the service\'s own: nobody else can enter it, take its lock, or take its name after a stop', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const s = await start(t, box)
  await create(s, 'own/a', { x: { shape: [8], dtype: 'uint8' } })
  t.throws(() => box.run(['flock', '-n', stateDir, 'true'], mallory.name), 'another user cannot open the directory to hold its lock')
  t.throws(() => box.run(['touch', `${stateDir}/journal.jsonl.tmp`], mallory.name), 'nor plant anything in it')
  t.equal(await stop(s), 0)
  const root = statSync(`${box.shm}/.tensorshm-${uid}`)
  t.equal(root.uid, uid)
  t.equal(root.mode & 0o777, 0o700, 'the directory above the state stays, 0700: its name is never free for someone else to take')
  const again = await start(t, box)
  t.same((await api(again.url, 'GET', '/v1/segments')).body, { segments: [] })
})

t.test('a journal that does not check out: bad records are skipped and counted, another user\'s files are neither adopted nor unlinked', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const theirs = segment('a1')
  const alsoTheirs = segment('a2')
  box.run(['sh', '-c', `umask 077; echo secret > /dev/shm/${theirs}; echo kept > /dev/shm/${alsoTheirs}`], mallory.name)
  const id = (name: string) => { const st = statSync(`${box.shm}/${name}`, { bigint: true }); return { ino: st.ino.toString(), dev: st.dev.toString() } }
  const record = (name: string, more: object = {}) => ({ name, namespace: 'forged', key: 'k', index: null, shape: [7], dtype: 'uint8', nbytes: 7, size: 7, ...id(theirs), createdAt: Date.now(), ttl: 0, expiresAt: null, owner: null, ...more })
  const lines = [
    { op: 'create', records: [record(theirs)] },
    { op: 'limbo', entries: [{ names: [alsoTheirs], ...id(alsoTheirs) }] },
    { op: 'create', records: [record(segment('b1'), { ino: 'x' })] },
    { op: 'create', records: [record('../../etc/passwd')] },
    { op: 'create', records: [record(segment('b2'), { nbytes: 9 })] },
    { op: 'chmod', path: '/etc/shadow' }
  ]
  box.run(['mkdir', '-p', '-m', '0700', stateDir])
  writeFileSync(`${box.shm}/.tensorshm-${uid}/${prefix}/journal.jsonl`, lines.map((l) => JSON.stringify(l)).join('\n') + '\n{"op":"create","rec', { mode: 0o600 })
  const s = await start(t, box)
  t.equal((await api(s.url, 'GET', `/v1/segments/${theirs}`)).status, 404, 'another user\'s file under a journaled name is not adopted')
  t.same((await api(s.url, 'GET', '/v1/segments')).body, { segments: [] })
  t.equal(box.run(['cat', `/dev/shm/${theirs}`]), 'secret\n')
  t.equal(box.run(['cat', `/dev/shm/${alsoTheirs}`]), 'kept\n', 'nor unlinked as a file in limbo')
  t.equal(await metric(s, 'tensorshm_journal_skipped_total'), 5, 'ino "x", a path for a name, a size that does not add up, an unknown op, a cut line')
  t.equal(await metric(s, 'tensorshm_releases_total{reason="vanished"}'), 1, 'the foreign one is forgotten, and counted')
  t.match(s.log(), /"found":"owned by uid \d+".*a journaled segment is not ours any more/)
})

t.test('a FIFO or a symlink under a freed name hangs nothing: every route answers, and the planted files stay', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const s = await start(t, box)
  const made = await create(s, 'fifo/a', { a: { shape: [8], dtype: 'uint8' }, b: { shape: [8], dtype: 'uint8' }, c: { shape: [8], dtype: 'uint8' }, d: { shape: [8], dtype: 'uint8' } })
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((k) => made[k] as { name: string, shape: number[], dtype: string })
  if (a === undefined || b === undefined || c === undefined || d === undefined) throw new Error('no descriptors')
  // A client (the service's own uid) frees the names, as Python's resource tracker does; then the other user moves in.
  box.run(['rm', '-f', ...[a, b, c, d].map((x) => `/dev/shm/${x.name}`)])
  box.run(['sh', '-c', `mkfifo -m 0666 /dev/shm/${a.name} /dev/shm/${c.name} && ln -s /dev/shm/${segment('ffff')} /dev/shm/${b.name} && mkdir /dev/shm/${d.name}`], mallory.name)
  const info = await api(s.url, 'GET', `/v1/segments/${a.name}`)
  t.equal(info.status, 200)
  t.equal(info.body.present, false, 'a FIFO is not the segment')
  const data = await fetch(`${s.url}/v1/segments/${b.name}/data`, { signal: AbortSignal.timeout(10_000) })
  t.equal(data.status, 410, 'a symlink is gone, not followed')
  t.match(await data.json(), { code: 'TSHM_SEGMENT_GONE' })
  const decode = await api(s.url, 'POST', '/v1/decode', { x: c })
  t.equal(decode.status, 410, 'decoding a FIFO answers at once')
  t.equal((await api(s.url, 'DELETE', `/v1/segments/${d.name}`)).status, 204, 'a release drops the record and leaves the directory alone')
  t.equal((await api(s.url, 'GET', '/healthz')).status, 200)
  t.equal((await api(s.url, 'GET', '/readyz')).status, 200)
  t.same(box.files(prefix), [a.name, b.name, c.name, d.name].sort(), 'nothing planted was removed')
  t.equal(await stop(s), 0)
  t.same(box.files(prefix), [a.name, b.name, c.name, d.name].sort(), 'not at shutdown either')
})

t.test('after SIGKILL, a FIFO or a symlink under a journaled name neither hangs nor stops the next start', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const first = await start(t, box)
  const made = await create(first, 'restart/a', { f: { shape: [8], dtype: 'uint8' }, l: { shape: [8], dtype: 'uint8' }, ok: { shape: [8], dtype: 'uint8' } })
  await kill(first)
  const f = made.f?.name ?? ''
  const l = made.l?.name ?? ''
  box.run(['rm', '-f', `/dev/shm/${f}`, `/dev/shm/${l}`])
  box.run(['sh', '-c', `mkfifo /dev/shm/${f} && ln -s /dev/shm/${made.ok?.name ?? ''} /dev/shm/${l}`], mallory.name)
  const second = await start(t, box)
  const listed = ((await api(second.url, 'GET', '/v1/segments')).body.segments as Array<{ name: string }>).map((x) => x.name)
  t.same(listed, [made.ok?.name], 'only the segment that is still ours came back')
  t.equal(await metric(second, 'tensorshm_releases_total{reason="vanished"}'), 2)
  t.equal(await stop(second), 0)
  t.same(box.files(prefix), [f, l].sort(), 'the planted FIFO and symlink are still there; the segment was released')
})

t.test('another user\'s files with our prefix are orphans: counted by the pages they hold, symlinks never followed', { skip }, async (t) => {
  const box = await sandbox(t)
  const mallory = localUser(t)
  writeFileSync(`${box.shm}/big`, Buffer.alloc(8 << 20, 1))
  box.run(['sh', '-c', `cd /dev/shm && for i in $(seq 1 2000); do : > ${prefix}empty$i; done && ln -s /dev/shm/big ${prefix}link && head -c 10000 /dev/zero > ${prefix}small`], mallory.name)
  const s = await start(t, box, { TENSORSHM_SWEEP_INTERVAL: '0.2' })
  await poll('the orphans counted', async () => {
    const n = await metric(s, 'tensorshm_leaked_segments{kind="orphan"}')
    if (n !== 2001) throw new Error(`orphans: ${String(n)}`)
  }, { timeoutMs: 20_000, intervalMs: 200 })
  t.equal(await metric(s, 'tensorshm_leaked_bytes{kind="orphan"}'), 12288, 'the pages of the 10000-byte file; empty files hold none, and the symlink\'s target is not theirs to claim')
  t.equal(await stop(s), 0)
  t.equal(box.files(prefix).length, 2002, 'orphans are never deleted')
})

t.test('a full /dev/shm: a restart comes back and releases what expired', { skip }, async (t) => {
  const box = await sandbox(t, '24m')
  const s = await start(t, box, { TENSORSHM_DEFAULT_TTL: '1', TENSORSHM_POOL_BYTES: '0' })
  let made = 0
  for (;;) {
    const r = await api(s.url, 'POST', '/v1/segments', { namespace: `full/${made}`, tensors: { x: { shape: [1 << 20], dtype: 'uint8' } } })
    if (r.status !== 201) { t.equal(r.status, 507); break }
    made++
  }
  t.ok(made >= 10, `${made} segments of 1 MiB fit`)
  // The last pages go to a file of root's: not one byte is free when the service starts again.
  const fd = openSync(`${box.shm}/filler`, 'w')
  try { for (const page = Buffer.alloc(4096); ;) writeSync(fd, page) } catch {} finally { closeSync(fd) }
  await kill(s)
  await sleep(1200)
  const again = await start(t, box, { TENSORSHM_DEFAULT_TTL: '1', TENSORSHM_POOL_BYTES: '0' })
  t.same((await api(again.url, 'GET', '/v1/segments')).body, { segments: [] }, 'every expired segment was released at start')
  t.equal(await metric(again, 'tensorshm_releases_total{reason="expired"}'), made)
  t.same(box.files(prefix), [])
  t.equal((await api(again.url, 'POST', '/v1/segments', { namespace: 'full/after', tensors: { x: { shape: [1 << 20], dtype: 'uint8' } } })).status, 201, 'and there is room again')
})

const ROUNDS = 12

t.test('SIGKILL under a create/release load, again and again: every journaled segment comes back, no file is left that nobody knows', { skip }, async (t) => {
  const box = await sandbox(t, '512m')
  const sizes = [64 << 10, 1 << 20, 17 << 20]
  /** What the clients were told: created (201), and released (2xx). */
  const live = new Set<string>()
  const released = new Set<string>()
  let round = 0
  const load = async (s: Service, stopAt: number, worker: number) => {
    for (let i = 0; Date.now() < stopAt; i++) {
      const namespace = `chaos-${worker}/r${round}-${i}`
      // Sizes that rarely repeat: most creates make fresh files (the widest window for a kill), some reuse kept ones.
      const size = (sizes[(i + worker) % sizes.length] as number) + ((i * 7 + worker) % 8) * 4096
      try {
        const r = await api(s.url, 'POST', '/v1/segments', { namespace, tensors: { a: { shape: [size], dtype: 'uint8' }, b: { shape: [size >> 2], dtype: 'uint8' }, c: [{ shape: [size >> 4], dtype: 'uint8' }, { shape: [size >> 4], dtype: 'uint8' }] } })
        if (r.status !== 201) continue
        const names = Object.values(r.body.segments as Record<string, { name: string } | Array<{ name: string }>>).flat().map((d) => d.name)
        for (const n of names) live.add(n)
        if (i % 3 === 2) continue // some stay live across the kill
        // A release cut short by the kill may or may not have happened: such names are expected neither way.
        for (const n of names) live.delete(n)
        const del = await api(s.url, 'DELETE', `/v1/segments?namespace=${namespace}`)
        if (del.status === 200) for (const n of names) released.add(n)
      } catch {
        return // the service is gone: this round is over
      }
    }
  }
  for (round = 0; round < ROUNDS; round++) {
    const s = await start(t, box)
    const listed = new Set(((await api(s.url, 'GET', '/v1/segments')).body.segments as Array<{ name: string }>).map((x) => x.name))
    t.same([...live].filter((n) => !listed.has(n)), [], `round ${round}: every segment created and not released came back`)
    t.same([...released].filter((n) => listed.has(n)), [], `round ${round}: no released segment came back`)
    for (const n of listed) live.add(n)
    t.same(box.files(prefix).filter((f) => !listed.has(f)), [], `round ${round}: no file is left that the service does not know`)
    const until = Date.now() + 300 + Math.floor(Math.random() * 500)
    const workers = [0, 1, 2, 3, 4, 5, 6, 7].map(async (w) => { await load(s, until + 5000, w) })
    await sleep(until - Date.now())
    await kill(s)
    await Promise.all(workers)
  }
  const last = await start(t, box)
  const listed = ((await api(last.url, 'GET', '/v1/segments')).body.segments as Array<{ name: string }>).map((x) => x.name).sort()
  t.same(box.files(prefix), listed, 'after recovery, /dev/shm holds exactly the segments the service knows')
  t.ok(listed.length > 0 && released.size > 0, `${listed.length} live and ${released.size} released across ${ROUNDS} kills`)
  t.equal(await stop(last), 0)
  t.same(box.files(prefix), [], 'and a graceful stop releases them all')
})

// As the segments' owner (TENSORSHM_SEGMENT_OWNER), mallory may rename them in the sticky /dev/shm: it exchanges a
// released segment's name with a file of its own in a loop, so that the name holds the decoy at the moment of the
// service's rename. Whatever the rename then moves must be the recorded inode, or it goes back and nothing is kept.
const SWAPPER = `import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
for line in sys.stdin:
    name, decoy, ms = line.split()
    with open('/dev/shm/' + decoy, 'wb') as f:
        f.write(b'F' * 4096)
        ino = os.fstat(f.fileno()).st_ino
    a, b = ('/dev/shm/' + name).encode(), ('/dev/shm/' + decoy).encode()
    end = time.monotonic() + int(ms) / 1000
    print('go', ino, flush=True)
    while time.monotonic() < end: libc.renameat2(-100, a, -100, b, 2)
    print('done', flush=True)
`

/**
 * A service whose segments belong to mallory (TENSORSHM_SEGMENT_OWNER), and SWAPPER running as mallory. `swap` starts
 * one loop of exchanges and resolves, once it runs, with the decoy's inode as made (before the first exchange);
 * `swapped` resolves when that loop is over.
 */
async function ownerSwapping (t: Test) {
  const box = await sandbox(t)
  const mallory = localUser(t)
  const s = await start(t, box, { TENSORSHM_SEGMENT_OWNER: `${mallory.uid}:${mallory.gid}` })
  const [bin, ...args] = box.argv(['python3', '-c', SWAPPER], mallory.name)
  const swapper = spawn(bin as string, args, { stdio: ['pipe', 'pipe', 'inherit'], detached: true })
  t.teardown(() => { try { process.kill(-(swapper.pid ?? 0), 'SIGKILL') } catch {} })
  let said = ''
  swapper.stdout.on('data', (d: Buffer) => { said += d.toString() })
  const heard = async (word: string, count: number) => { await poll(`the swapper to say ${word}`, async () => { if (said.split(word).length - 1 < count) throw new Error(said) }, { timeoutMs: 10_000, intervalMs: 2 }) }
  let loops = 0
  const swap = async (name: string, decoy: string, ms: number): Promise<number> => {
    swapper.stdin.write(`${name} ${decoy} ${ms}\n`)
    await heard('go', ++loops)
    return Number(said.trim().split('\n').filter((l) => l.startsWith('go ')).at(-1)?.slice(3))
  }
  const swapped = async (): Promise<void> => { await heard('done', loops) }
  const inodeAt = (name: string): number | undefined => { try { return statSync(`${box.shm}/${name}`).ino } catch { return undefined } }
  return { box, s, swap, swapped, inodeAt }
}

t.test('an owner that swaps a released segment\'s name for a file of its own in a loop never gets that file into the pool', { skip }, async (t) => {
  const { box, s, swap, swapped, inodeAt } = await ownerSwapping(t)
  const ROUNDS = 40
  let moved = 0
  let handedOut = 0
  for (let i = 0; i < ROUNDS; i++) {
    const name = (await create(s, `race/a${i}`, { x: { shape: [4096], dtype: 'uint8' } })).x?.name ?? ''
    const decoy = await swap(name, `decoy-${i}`, 40)
    const released = await api(s.url, 'DELETE', `/v1/segments/${name}`)
    await swapped()
    if (released.status !== 204) t.fail(`round ${i}: release answered ${released.status}`)
    // The decoy is where mallory put it (its own name or the segment's), never under a name the service gave it.
    if (box.files(prefix).some((f) => f !== name && inodeAt(f) === decoy)) moved++
    const next = (await create(s, `race/b${i}`, { x: { shape: [4096], dtype: 'uint8' } })).x?.name ?? ''
    if (inodeAt(next) === decoy) handedOut++
    await api(s.url, 'DELETE', `/v1/segments/${next}`)
  }
  t.equal(moved, 0, `in ${ROUNDS} raced releases, the decoy never stayed under a pool name`)
  t.equal(handedOut, 0, 'and the pool never handed it out as a new segment')
  t.equal(await stop(s), 0)
})

t.test('an owner that swaps a kept file\'s name while a create reuses it never gets its object handed out; the create is made fresh', { skip }, async (t) => {
  const { box, s, swap, swapped, inodeAt } = await ownerSwapping(t)
  const spec = { x: { shape: [4096], dtype: 'uint8' } }
  const ROUNDS = 40
  let handedOut = 0
  let lost = 0
  for (let i = 0; i < ROUNDS; i++) {
    // A root of its own each round: the one kept file of this key is the released one, under a name the pool chose.
    const first = (await create(s, `take${i}/a`, spec)).x?.name ?? ''
    const before = new Set(box.files(prefix))
    t.equal((await api(s.url, 'DELETE', `/v1/segments/${first}`)).status, 204)
    const kept = box.files(prefix).filter((f) => !before.has(f))
    if (kept.length !== 1) { t.fail(`round ${i}: the release kept ${kept.length} files`); continue }
    const decoy = await swap(kept[0] as string, `decoy-take-${i}`, 40)
    // Reuses the kept file: checked through its fd, then renamed after the journal's write, a turn later.
    const next = (await create(s, `take${i}/b`, spec)).x?.name ?? ''
    await swapped()
    if (inodeAt(next) === decoy) handedOut++
    // Wherever the swaps left it, the decoy is still there: undoing the create did not unlink it.
    if (!readdirSync(box.shm).some((f) => inodeAt(f) === decoy)) lost++
    t.equal((await api(s.url, 'DELETE', `/v1/segments/${next}`)).status, 204)
  }
  t.equal(handedOut, 0, `in ${ROUNDS} raced reuses, the owner's object never became a new segment`)
  t.equal(lost, 0, 'nor was it unlinked')
  t.equal(await stop(s), 0)
})
