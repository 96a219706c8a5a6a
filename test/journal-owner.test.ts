// The journal keeps what recovery needs to accept a socket caller's file as the service's own record: the owner it
// was given (with its inode) and the process release_on_exit binds it to. Nothing else is trusted from it.
import t from 'tap'
import { parseDtype } from '../src/codecs/dtype.js'
import { loadLimbo, loadRecord, store } from '../src/journal/format.js'
import { Replay } from '../src/journal/replay.js'
import type { SegmentRecord } from '../src/segments/registry.js'

const prefix = 'tshm_jo_'
const record = (extra: Partial<SegmentRecord> = {}): SegmentRecord => ({
  name: `${prefix}0123456789abcdef`,
  namespace: 'a/b',
  key: 'img',
  index: null,
  shape: [2, 3],
  dtype: parseDtype('uint8') as NonNullable<ReturnType<typeof parseDtype>>,
  nbytes: 6,
  size: 6,
  ino: 77n,
  dev: 5n,
  createdAt: 1,
  ttl: 600,
  expiresAt: 600_001,
  owner: 'uid:1234',
  ...extra
})
const roundTrip = (r: SegmentRecord) => loadRecord(JSON.parse(JSON.stringify(store(r))), prefix)

t.test('a caller\'s file owner and its process binding survive the journal', async (t) => {
  const r = record({ file: { uid: 1234, gid: 2000, mode: 0o640 }, boundTo: { pid: 4321, start: 987654 } })
  t.same(roundTrip(r), r)
  t.same(roundTrip(record()), record(), 'records of the service\'s own files stay as they were')
})

t.test('an owner or binding that this service could not have written makes the record skipped', async (t) => {
  for (const file of [{ uid: 1, gid: 1, mode: 0o666 }, { uid: 1, gid: 1, mode: 0o400 }, { uid: -1, gid: 1, mode: 0o600 }, { uid: 2 ** 32, gid: 1, mode: 0o600 }, { uid: '1', gid: 1, mode: 0o600 }]) {
    t.equal(loadRecord({ ...store(record()), file }, prefix), undefined, JSON.stringify(file))
  }
  for (const boundTo of [{ pid: 0, start: 1 }, { pid: 1.5, start: 1 }, { pid: 1, start: -1 }, { pid: 1 }]) {
    t.equal(loadRecord({ ...store(record()), boundTo }, prefix), undefined, JSON.stringify(boundTo))
  }
})

t.test('a released caller\'s file goes to limbo with its owner, so that recovery unlinks it only if it is still that file of that uid', async (t) => {
  const replay = new Replay(prefix)
  const r = record({ file: { uid: 1234, gid: 1234, mode: 0o600 } })
  replay.line(JSON.stringify({ op: 'create', records: [store(r)] }))
  replay.line(JSON.stringify({ op: 'release', names: [r.name] }))
  t.same(replay.finish().limbo.get(r.name), { ino: 77n, dev: 5n, uid: 1234 })
  t.same(loadLimbo({ names: [r.name], ino: '77', dev: '5', uid: 1234 }, prefix), { names: [r.name], ino: '77', dev: '5', uid: 1234 })
  t.equal(loadLimbo({ names: [r.name], uid: 1234 }, prefix), undefined, 'an owner without the inode it belongs to is not trusted')
  t.equal(loadLimbo({ names: [r.name], ino: '77', dev: '5', uid: 'root' }, prefix), undefined)
})
