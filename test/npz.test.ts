import t, { type Test } from 'tap'
import fc from 'fast-check'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseDtype, type Dtype } from '../src/codecs/dtype.js'
import { npyHeader } from '../src/codecs/npy.js'
import { NpzDataError, NpzNameError, npzSize, npzStream, type NpzEntry } from '../src/codecs/npz.js'
import { python } from './helpers/python.js'

const MiB = 2 ** 20
const dtype = (s: string): Dtype => {
  const d = parseDtype(s)
  if (d === undefined) throw new Error(`test setup: ${s} must parse`)
  return d
}
const u8 = dtype('uint8')

/** Deterministic bytes that differ from seed to seed (xorshift32). */
const pseudo = (n: number, seed: number): Buffer => {
  const out = Buffer.alloc(n)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** An entry whose source yields `data` in the given pieces (by default, three async pieces with an empty one between). */
const entry = (name: string, descr: string, shape: number[], seed: number, kind: 'async' | 'array' | 'promise' = 'async'): NpzEntry & { data: Buffer } => {
  const d = dtype(descr)
  const data = pseudo(shape.reduce((n, x) => n * x, d.itemsize), seed)
  const cut = Math.floor(data.length / 3)
  const pieces = [data.subarray(0, cut), Buffer.alloc(0), data.subarray(cut)]
  async function * gen (): AsyncGenerator<Buffer> { yield * pieces }
  const open = kind === 'array' ? () => pieces : kind === 'promise' ? async () => gen() : gen
  return { name, dtype: d, shape, nbytes: data.length, data, open }
}

const drain = async (stream: Readable): Promise<{ data: Buffer, error?: Error }> => {
  const chunks: Buffer[] = []
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    return { data: Buffer.concat(chunks) }
  } catch (error) {
    return { data: Buffer.concat(chunks), error: error as Error }
  }
}

const tempDir = (t: Test): string => {
  const dir = mkdtempSync(join(tmpdir(), 'tensorshm-npz-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Checked {
  bad: string | null
  infos: Array<{ name: string, size: number, flags: number, zip64: boolean, offset: number }>
  arrays: Record<string, { sha: string, descr: string, shape: number[] }>
}
/** numpy.load and zipfile's own view of each archive. */
const inspect = async (paths: string[]): Promise<Checked[]> => await python<Checked[]>(`
import hashlib, json, sys, zipfile
import numpy as np
out = []
for path in json.load(sys.stdin):
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
        infos = [{'name': i.filename, 'size': i.file_size, 'flags': i.flag_bits, 'zip64': i.extra[:2] == b'\\x01\\x00',
                  'offset': i.header_offset} for i in zf.infolist()]
    arrays = {}
    if infos:  # numpy sniffs 'PK\\x03\\x04' (or an empty archive's 'PK\\x05\\x06') to tell an npz from an npy
        with np.load(path) as z:
            arrays = {k: {'sha': hashlib.sha256(z[k].tobytes()).hexdigest(), 'descr': z[k].dtype.str, 'shape': list(z[k].shape)} for k in z.files}
    out.append({'bad': bad, 'infos': infos, 'arrays': arrays})
print(json.dumps(out))
`, paths)

const hasUnzip = spawnSync('unzip', ['-v']).error === undefined
const unzipTest = (t: Test, path: string): void => {
  if (!hasUnzip) return
  const r = spawnSync('unzip', ['-t', path], { encoding: 'utf8' })
  t.equal(r.status, 0, `unzip -t ${path}: ${r.stdout} ${r.stderr}`)
  t.match(r.stdout, /No errors detected/)
}

for (const forceZip64 of [false, true]) {
  t.test(`numpy loads a several-entry archive bit-exactly (forceZip64: ${forceZip64})`, async (t) => {
    const entries = [
      entry('weights', 'float32', [2, 3], 1),
      entry('big_endian', '>i2', [4], 2, 'array'),
      entry('mask', 'bool', [5], 3, 'promise'),
      entry('z', 'complex128', [2, 2], 4),
      entry('empty', 'uint8', [0, 3], 5),
      entry('scalar', 'float64', [], 6, 'array'),
      entry('température_ψ', '>f4', [3, 1], 7),
      entry('a.b c', 'uint64', [1], 8)
    ]
    const { data, error } = await drain(npzStream(entries, { forceZip64 }))
    t.error(error)
    t.equal(data.length, npzSize(entries, { forceZip64 }), 'npzSize is the streamed length')
    const path = join(tempDir(t), 'a.npz')
    writeFileSync(path, data)
    const [checked] = await inspect([path])
    t.equal(checked?.bad, null, 'zipfile testzip()')
    t.same(checked?.arrays, Object.fromEntries(entries.map((e) => [e.name, { sha: sha(e.data), descr: e.dtype.descr, shape: e.shape }])))
    for (const info of checked?.infos ?? []) {
      t.equal(info.flags & 0x8, 0x8, `${info.name}: CRC in a data descriptor`)
      t.equal(info.flags & 0x800, /^[\x20-\x7e]*$/.test(info.name) ? 0 : 0x800, `${info.name}: UTF-8 flag iff non-ASCII`)
      t.equal(info.zip64, forceZip64, `${info.name}: zip64 extra field`)
      // The documented choice: real sizes in the local header, CRC zero there.
      t.equal(data.readUInt32LE(info.offset + 14), 0, `${info.name}: no CRC in the local header`)
      t.same([18, 22].map((at) => data.readUInt32LE(info.offset + at)), Array(2).fill(forceZip64 ? 0xffffffff : info.size), `${info.name}: local header sizes`)
    }
    t.equal(data.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])), forceZip64, 'zip64 end record')
    unzipTest(t, path)
  })
}

t.test('any list of entries: npzSize is the streamed length, and numpy reads back every byte', async (t) => {
  const name = fc.string({ unit: fc.constantFrom('a', 'B', '_', '-', '.', ' ', 'é', 'ψ', '日', '😀'), minLength: 1, maxLength: 12 })
    .filter((s) => s !== '.' && s !== '..')
  const spec = fc.record({
    name,
    descr: fc.constantFrom('bool', 'int8', '>i2', 'int32', '>u8', 'float16', 'float32', '>f8', 'complex64'),
    shape: fc.array(fc.nat(5), { maxLength: 3 })
  })
  const lists = fc.sample(fc.record({ specs: fc.uniqueArray(spec, { maxLength: 5, selector: (s) => s.name }), forceZip64: fc.boolean() }), { numRuns: 40, seed: 42 })
  const dir = tempDir(t)
  const paths: string[] = []
  const expected: Array<Record<string, { sha: string, descr: string, shape: number[] }>> = []
  for (const [i, { specs, forceZip64 }] of lists.entries()) {
    const entries = specs.map((s, j) => entry(s.name, s.descr, s.shape, 100 * i + j, (['async', 'array', 'promise'] as const)[j % 3]))
    const { data, error } = await drain(npzStream(entries, { forceZip64 }))
    t.error(error)
    t.equal(data.length, npzSize(entries, { forceZip64 }), `archive ${i}: npzSize`)
    paths.push(join(dir, `${i}.npz`))
    writeFileSync(paths[i] as string, data)
    expected.push(Object.fromEntries(entries.map((e) => [e.name, { sha: sha(e.data), descr: e.dtype.descr, shape: e.shape }])))
  }
  const checked = await inspect(paths)
  checked.forEach((c, i) => {
    t.equal(c.bad, null, `archive ${i}: testzip`)
    if (c.infos.length > 0) t.same(c.arrays, expected[i], `archive ${i}: numpy.load`)
  })
})

t.test('an archive without entries is a valid (empty) ZIP', async (t) => {
  const dir = tempDir(t)
  const paths = []
  for (const forceZip64 of [false, true]) {
    const { data } = await drain(npzStream([], { forceZip64 }))
    t.equal(data.length, npzSize([], { forceZip64 }))
    t.equal(data.length, forceZip64 ? 98 : 22)
    paths.push(join(dir, `${forceZip64}.npz`))
    writeFileSync(paths.at(-1) as string, data)
  }
  const checked = await inspect(paths)
  t.same(checked.map((c) => [c.bad, c.infos.length]), [[null, 0], [null, 0]])
  const files = await python<string[]>(`
import json, sys
import numpy as np
print(json.dumps(np.load(json.load(sys.stdin)).files))
`, paths[0])
  t.same(files, [], 'numpy.load opens the classic empty archive')
})

t.test('names that cannot be a member are refused before any byte is streamed', async (t) => {
  const bad = ['', '.', '..', 'a/b', '/abs', 'a\\b', 'nul\0byte', 'x'.repeat(256), 'é'.repeat(128), 'lone\ud800surrogate']
  for (const name of bad) {
    const entries = [entry('ok', 'uint8', [1], 1), entry(name, 'uint8', [1], 2)]
    t.throws(() => npzStream(entries), NpzNameError, `npzStream: ${JSON.stringify(name.slice(0, 20))}`)
    t.throws(() => npzSize(entries), NpzNameError, `npzSize: ${JSON.stringify(name.slice(0, 20))}`)
  }
  t.throws(() => npzSize([entry('twice', 'uint8', [1], 1), entry('twice', 'int8', [1], 2)]), { name: 'NpzNameError', message: /duplicate/ })
  t.doesNotThrow(() => npzSize([entry('é'.repeat(127) + 'x', 'uint8', [1], 1)]), '255 bytes is the limit')
  t.throws(() => npzSize([{ ...entry('short', 'float32', [2, 3], 1), nbytes: 23 }]), RangeError, 'nbytes must match the shape')
  t.throws(() => npzSize([{ ...entry('neg', 'float32', [2, 3], 1), shape: [-2, -3] }]), RangeError, 'a negative shape')

  // A lazy iterable is validated entry by entry: the stream fails before the bad entry's first byte.
  async function * lazy (): AsyncGenerator<NpzEntry> { yield entry('first', 'uint8', [4], 1); yield entry('a/b', 'uint8', [4], 2) }
  const { data, error } = await drain(npzStream(lazy()))
  t.type(error, NpzNameError)
  t.equal(data.length, 30 + 'first.npy'.length + npyHeader(u8, [4]).length + 4 + 16, 'only the first member')
})

t.test('a source that yields too few or too many bytes, or throws, destroys the stream with an error', async (t) => {
  const base = entry('x', 'uint8', [100], 1)
  const local = 30 + 'x.npy'.length + npyHeader(u8, [100]).length
  const cases: Array<[string, NpzEntry['open'], (err: Error | undefined) => void]> = [
    ['too few', () => [base.data.subarray(0, 99)], (err) => t.match(err, { name: 'NpzDataError', message: /yielded 99 of its 100 bytes/ })],
    ['none', () => [], (err) => t.match(err, { name: 'NpzDataError', message: /yielded 0 of its 100 bytes/ })],
    ['too many', () => [base.data, Buffer.from([1])], (err) => t.match(err, { name: 'NpzDataError', message: /more than its 100 bytes/ })],
    ['too many in one chunk', () => [Buffer.alloc(101)], (err) => t.type(err, NpzDataError)]
  ]
  for (const [what, open, check] of cases) {
    const { data, error } = await drain(npzStream([{ ...base, open }, entry('after', 'uint8', [1], 2)]))
    check(error)
    t.ok(data.length <= local + 100, `${what}: no byte past the entry's data went out (${data.length})`)
  }
  const boom = new Error('boom')
  const thrown = await drain(npzStream([{ ...base, open: async function * () { yield base.data.subarray(0, 10); throw boom } }]))
  t.equal(thrown.error, boom, 'a throwing source: its own error')
  const rejected = await drain(npzStream([{ ...base, open: async () => { throw boom } }]))
  t.equal(rejected.error, boom, 'a rejecting open(): its own error')
})

t.test('destroying the stream stops the source and calls its return()', async (t) => {
  let pulled = 0
  let returned = false
  async function * endless (): AsyncGenerator<Buffer> {
    try {
      for (;;) { pulled++; yield Buffer.alloc(MiB) }
    } finally { returned = true }
  }
  const stream = npzStream([{ name: 'x', dtype: u8, shape: [2 ** 40], nbytes: 2 ** 40, open: endless }])
  let got = 0
  for await (const chunk of stream) {
    got += (chunk as Buffer).length
    if (got > 3 * MiB) break // for await's break destroys the stream
  }
  await new Promise((resolve) => stream.closed ? resolve(null) : stream.once('close', resolve))
  t.ok(returned, 'the source was closed')
  t.ok(pulled <= 6, `pulled ${pulled} MiB for the ${Math.ceil(got / MiB)} MiB consumed`)

  // Destroyed while the source is busy producing its next chunk: return() follows once that chunk arrives.
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  let closed = false
  async function * stalled (): AsyncGenerator<Buffer> {
    try {
      yield Buffer.from('first')
      await gate
      yield Buffer.from('never seen')
      yield Buffer.from('never pulled')
    } finally { closed = true }
  }
  const s2 = npzStream([{ name: 'y', dtype: u8, shape: [25], nbytes: 25, open: stalled }])
  const seen: Buffer[] = []
  s2.on('data', (chunk: Buffer) => {
    seen.push(chunk)
    if (chunk.toString() === 'first') setImmediate(() => { s2.destroy(); setImmediate(release) })
  })
  await new Promise((resolve) => s2.once('close', resolve))
  t.ok(closed, 'the stalled source was closed')
  t.notOk(Buffer.concat(seen).includes('never'), 'nothing after the destroy reached the consumer')
})

/** Pipes `stream` through a consumer that takes 1 ms per chunk; reports how far `pulled()` ran ahead of it. */
const slowConsume = async (stream: Readable, pulled: () => number, dataStart: number): Promise<{ maxAhead: number, consumed: number }> => {
  let consumed = 0
  let maxAhead = 0
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      maxAhead = Math.max(maxAhead, pulled() - Math.max(0, consumed - dataStart))
      setTimeout(() => { consumed += chunk.length; cb() }, 1)
    }
  })
  await pipeline(stream, sink)
  return { maxAhead, consumed }
}

t.test('backpressure: a slow consumer of a 256 MiB entry never has more than a few source chunks pulled ahead of it', async (t) => {
  const n = 256
  let pulled = 0
  async function * lazy (): AsyncGenerator<Buffer> { for (let i = 0; i < n; i++) { pulled += MiB; yield Buffer.alloc(MiB, i) } }
  const entries = [{ name: 'big', dtype: u8, shape: [n * MiB], nbytes: n * MiB, open: lazy }]
  const dataStart = 30 + 'big.npy'.length + npyHeader(u8, [n * MiB]).length
  const { maxAhead, consumed } = await slowConsume(npzStream(entries), () => pulled, dataStart)
  t.equal(consumed, npzSize(entries))
  t.ok(maxAhead <= 4 * MiB, `at most 4 chunks ahead of the consumer: ${maxAhead / MiB} MiB`)

  // The same measurement catches a stream that ignores push() === false.
  let eager = 0
  const greedy = new Readable({
    read () {
      while (eager < 32 * MiB) { eager += MiB; this.push(Buffer.alloc(MiB)) }
      this.push(null)
    }
  })
  const control = await slowConsume(greedy, () => eager, 0)
  t.ok(control.maxAhead >= 16 * MiB, `control: a greedy stream runs ${control.maxAhead / MiB} MiB ahead`)
})

// 4 GiB + 1 MiB of data, behind a small member and before another: the big member's sizes, the last member's
// offset and the central directory's offset all need ZIP64, without forceZip64. About 35 s here, most of it in
// `unzip -t`; the file goes to os.tmpdir() (a disk, not /dev/shm) and is deleted afterwards.
t.test('ZIP64 for real: a 4 GiB + 1 MiB member between two small ones', async (t) => {
  const dir = tempDir(t)
  const free = statfsSync(dir)
  if (free.bavail * free.bsize < 6 * 2 ** 30) return t.plan(0, `under 6 GiB free in ${dir}`)
  const chunks = 4 * 1024 + 1
  const pattern = pseudo(MiB, 99)
  const hash = createHash('sha256')
  async function * big (): AsyncGenerator<Buffer> {
    for (let i = 0; i < chunks; i++) {
      const chunk = Buffer.from(pattern)
      chunk.writeUInt32LE(i, (i * 4099) % (MiB - 4)) // every chunk differs, so a misplaced one changes the hash
      hash.update(chunk)
      yield chunk
    }
  }
  const small = [entry('a', 'float32', [3], 1), entry('z', '>i8', [2, 2], 2)]
  const entries = [small[0] as NpzEntry, { name: 'big', dtype: u8, shape: [chunks * MiB], nbytes: chunks * MiB, open: big }, small[1] as NpzEntry]
  const path = join(dir, 'big.npz')
  const started = Date.now()
  await pipeline(npzStream(entries), createWriteStream(path))
  t.comment(`wrote ${npzSize(entries)} bytes in ${(Date.now() - started) / 1000} s`)
  const read = Date.now()
  const got = await python<{ infos: Record<string, { size: number, offset: number, zip64: boolean }>, header: unknown[], sha: string, n: number, small: Record<string, string> }>(`
import hashlib, json, sys, zipfile
import numpy as np
path = json.load(sys.stdin)
with zipfile.ZipFile(path) as zf:
    infos = {i.filename: {'size': i.file_size, 'offset': i.header_offset, 'zip64': i.extra[:2] == b'\\x01\\x00'} for i in zf.infolist()}
    with zf.open('big.npy') as f:  # reading to the end checks the CRC
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        h, n = hashlib.sha256(), 0
        while b := f.read(1 << 22):
            h.update(b)
            n += len(b)
with np.load(path) as z:
    small = {k: hashlib.sha256(z[k].tobytes()).hexdigest() for k in ['a', 'z']}
print(json.dumps({'infos': infos, 'header': [list(version), list(shape), fortran, dtype.str], 'sha': h.hexdigest(), 'n': n, 'small': small}))
`, path, 600_000)
  t.comment(`python read it back in ${(Date.now() - read) / 1000} s`)
  t.equal(got.infos['big.npy']?.size, npyHeader(u8, [chunks * MiB]).length + chunks * MiB, 'infolist()[1].file_size')
  t.ok((got.infos['z.npy']?.offset ?? 0) > 0xffffffff, 'the last member starts past 4 GiB')
  t.same([got.infos['a.npy']?.zip64, got.infos['big.npy']?.zip64, got.infos['z.npy']?.zip64], [false, true, true], 'ZIP64 where needed only')
  t.same(got.header, [[1, 0], [chunks * MiB], false, '|u1'])
  t.equal(got.n, chunks * MiB)
  t.equal(got.sha, hash.digest('hex'), 'sha256 of the data, through zipfile')
  t.same(got.small, { a: sha((small[0] as { data: Buffer }).data), z: sha((small[1] as { data: Buffer }).data) })
  const unzip = Date.now()
  unzipTest(t, path)
  if (hasUnzip) t.comment(`unzip -t took ${(Date.now() - unzip) / 1000} s`)
})
