import t from 'tap'
import fc from 'fast-check'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { DTYPE_NAMES, parseDtype, type Dtype } from '../src/codecs/dtype.js'
import { createLine, store } from '../src/journal/format.js'
import { Journal } from '../src/journal/journal.js'
import { StateDir } from '../src/journal/state-dir.js'
import { newSegmentName } from '../src/segments/names.js'
import type { SegmentRecord } from '../src/segments/registry.js'
import { checkNoLeftovers, stateDir, suitePrefix } from './helpers/build.js'

const prefix = suitePrefix('journal')

function open (t: Parameters<typeof stateDir>[0]): { journal: Journal, lines: () => Array<{ op: string }> } {
  const dir = stateDir(t)
  const journal = Journal.open(StateDir.open(dir, process.geteuid?.() ?? 0), prefix, (err) => { throw err })
  t.teardown(() => { journal.close(false) })
  const lines = (): Array<{ op: string }> => readFileSync(join(dir, 'journal.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { op: string })
  return { journal, lines }
}

function record (n: number): SegmentRecord {
  const dtype = parseDtype('uint8')
  if (dtype === undefined) throw new Error('uint8 is a dtype')
  return { name: newSegmentName(prefix), namespace: `ns/${n}`, key: 'x', index: null, shape: [8], dtype, nbytes: 8, size: 8, ino: BigInt(1000 + n), dev: 42n, createdAt: 1, ttl: 0, expiresAt: null, owner: null }
}

t.test('lines of one event-loop turn go out together after the turn, and their callers wait for them', async (t) => {
  const { journal, lines } = open(t)
  const [a, b] = [record(1), record(2)]
  const created = journal.created([a])
  const released = journal.releasedLater([b], new Map())
  t.same(lines(), [], 'nothing is written while the turn runs')
  await Promise.all([created, released])
  t.same(lines().map((l) => l.op), ['create', 'release'], 'both, in order, once their callers resume')
})

t.test('a line written at once first writes what waits for the group write, so the order holds', async (t) => {
  const { journal, lines } = open(t)
  const waiting = journal.releasedLater([record(3)], new Map())
  journal.intend([newSegmentName(prefix)])
  t.same(lines().map((l) => l.op), ['release', 'intent'])
  await waiting
  t.same(lines().length, 2, 'and nothing twice')
})

t.test('a compaction while a line waits for its group write puts the line after the snapshot: nothing is lost, nothing waits', async (t) => {
  const { journal, lines } = open(t)
  const live = [record(5)]
  journal.attach({ records: () => live, owners: () => new Map() })
  const r = record(4)
  journal.intend([r.name])
  const written = journal.created([r])
  // The record is not live yet and no longer in limbo: a snapshot alone would drop the intent that names its file.
  t.equal(journal.compact(), true, 'compaction goes ahead at once')
  const after = lines()
  t.same(after.map((l) => l.op), ['create', 'create'], 'the snapshot, then the line that was waiting')
  t.ok(JSON.stringify(after[0]).includes(live[0]?.name ?? '?') && JSON.stringify(after[1]).includes(r.name), 'the live record, then the new one')
  await written
  t.equal(lines().length, 2, 'its caller hears it is written, and the group write writes nothing twice')
})

t.test('under load that leaves a line waiting at every turn, the journal still compacts', async (t) => {
  const { journal } = open(t)
  journal.attach({ records: () => [], owners: () => new Map() })
  const file = join(journal.dir.path, 'journal.jsonl')
  let largest = 0
  // Each turn appends a line and yields once: when a compaction's turn comes, the next line is already waiting.
  const written: Array<Promise<void>> = []
  for (let i = 0; i < 6000; i++) {
    written.push(journal.created([record(i)]))
    await new Promise((resolve) => setImmediate(resolve))
    largest = Math.max(largest, statSync(file).size)
  }
  await Promise.all(written)
  t.ok(statSync(file).size < 1 << 20, `compacted: ${statSync(file).size} bytes now, at most ${largest} on the way (6000 lines make 1.5 MB)`)
})

checkNoLeftovers(t, prefix)

t.test('a create line is byte for byte what JSON.stringify writes for the stored records', async (t) => {
  const dtypes = DTYPE_NAMES.map((n) => parseDtype(n) as Dtype)
  const int = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
  // Whatever strings, not only the ones validation lets through: escaping must agree for any of them.
  const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a/b', '"q"', '\\', '\u2028', '\ud800', '__proto__'))
  // Tails from small sets as well, so that the records of one line often differ in a single shared field.
  const few = fc.oneof({ arbitrary: fc.constantFrom(0, 1), weight: 4 }, { arbitrary: int, weight: 1 })
  const tail = fc.record({
    createdAt: few,
    ttl: fc.oneof({ arbitrary: fc.constantFrom(0, 1), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 365 * 24 * 3600 }), weight: 1 }),
    expiresAt: fc.option(few, { freq: 2 }),
    owner: fc.option(fc.oneof({ arbitrary: fc.constantFrom('uid:0', 'key-a'), weight: 4 }, { arbitrary: text, weight: 1 }), { freq: 2 }),
    file: fc.option(fc.record({ uid: fc.nat(), gid: fc.nat(), mode: fc.nat(0o7777) }), { nil: undefined, freq: 2 }),
    boundTo: fc.option(fc.record({ pid: fc.nat(), start: int }), { nil: undefined, freq: 2 })
  })
  const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
  const records = fc.array(tail, { minLength: 1, maxLength: 4 }).chain((tails) => fc.array(fc.record({
    name: text,
    namespace: fc.oneof(text, fc.constant('shared/ns')),
    key: text,
    index: fc.option(fc.nat()),
    shape: fc.array(fc.nat(), { maxLength: 4 }),
    dtype: fc.constantFrom(...dtypes),
    nbytes: int,
    size: int,
    ino: u64,
    dev: u64,
    tail: fc.constantFrom(...tails)
  }), { maxLength: 8 }))
  fc.assert(fc.property(records, (drawn) => {
    const rs: SegmentRecord[] = drawn.map(({ tail: { file, boundTo, ...shared }, ...r }) => ({
      ...r, ...shared, ...(file === undefined ? {} : { file }), ...(boundTo === undefined ? {} : { boundTo })
    }))
    return createLine(rs) === JSON.stringify({ op: 'create', records: rs.map(store) })
  }), { numRuns: 2000 })
  t.pass('2000 random creates agree')
})
