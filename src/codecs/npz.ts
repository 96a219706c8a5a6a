/**
 * A streaming .npz writer: a ZIP of STORED `<name>.npy` members, produced in constant memory, with ZIP64 where sizes
 * or offsets need it.
 *
 * Layout: the data is read once, so its CRC-32 is known only after the member: every member sets flag bit 3 and is
 * followed by a data descriptor (signature, CRC, sizes). The sizes are known up front, so the local header carries
 * them anyway (its CRC is 0). Readers that go by the central directory (numpy through zipfile, unzip: both tested)
 * ignore local sizes under bit 3; a streaming reader can only find the end of a STORED member from them, where
 * APPNOTE's zeros (what Python's and Go's streaming writers put there) leave it scanning for the descriptor.
 * ZIP64 (extra fields in both headers, 8-byte descriptor sizes) is per member, when its size or offset reaches
 * 0xFFFFFFFF; the ZIP64 end records, when the count reaches 0xFFFF or the directory's size or offset 0xFFFFFFFF.
 */
import { Readable } from 'node:stream'
import { crc32 } from 'node:zlib'
import type { Dtype } from './dtype.js'
import { npyHeader } from './npy.js'

export interface NpzEntry {
  /** Archive member name without '.npy' (the writer appends '.npy'). */
  name: string
  dtype: Dtype
  shape: number[]
  /** Exact byte length of the data the source will yield (C order). */
  nbytes: number
  /**
   * Called when the writer reaches this entry: yields the raw bytes, in chunks it must not modify afterwards. Fewer
   * or more than nbytes destroys the archive stream with an NpzDataError; never a silently corrupt archive.
   */
  open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Promise<AsyncIterable<Uint8Array> | Iterable<Uint8Array>>
}

export interface NpzOptions {
  /** Use ZIP64 records for every member and the end of the archive, even when small (for tests). */
  forceZip64?: boolean
}

export class NpzNameError extends Error {
  constructor (what: string) {
    super(`npz: ${what}`)
    this.name = 'NpzNameError'
  }
}

/** A source yielded a different number of bytes than its entry's nbytes. */
export class NpzDataError extends Error {
  constructor (what: string) {
    super(`npz: ${what}`)
    this.name = 'NpzDataError'
  }
}

type Spec = Pick<NpzEntry, 'name' | 'dtype' | 'shape' | 'nbytes'>

interface Member { name: Buffer, flags: number, zip64: boolean, offset: number, size: number, crc: number }

const U32 = 0xffffffff
const U16 = 0xffff
const VERSION = 20 // 2.0: STORED, data descriptor
const VERSION_ZIP64 = 45
const MADE_BY_UNIX = 3 << 8 // so that the external attributes are a Unix mode
const FILE_MODE = (0o100644 * 0x10000) >>> 0
const DOS_DATE = (1 << 5) | 1 // 1980-01-01 00:00: fixed, so that archives are reproducible
const FLAG_DESCRIPTOR = 1 << 3
const FLAG_UTF8 = 1 << 11

const localSize = (m: Member): number => 30 + m.name.length + (m.zip64 ? 20 : 0)
const descriptorSize = (m: Member): number => (m.zip64 ? 24 : 16)
const centralSize = (m: Member): number => 46 + m.name.length + (m.zip64 ? 28 : 0)

/** Validates one entry and lays it out at `offset`: the npy preamble and everything but the CRC. */
function layout (entry: Spec, offset: number, seen: Set<string>, force: boolean): { member: Member, preamble: Buffer } {
  const { name } = entry
  if (name === '' || name === '.' || name === '..' || /[/\\]/.test(name) || name.includes('\0')) throw new NpzNameError(`invalid member name ${JSON.stringify(name)}`)
  const bytes = Buffer.from(name, 'utf8')
  if (bytes.toString('utf8') !== name) throw new NpzNameError(`member name ${JSON.stringify(name)} is not valid Unicode`)
  if (bytes.length > 255) throw new NpzNameError(`member name ${JSON.stringify(name.slice(0, 32))}... is over 255 bytes`)
  if (seen.has(name)) throw new NpzNameError(`duplicate member name ${JSON.stringify(name)}`)
  seen.add(name)
  const preamble = npyHeader(entry.dtype, entry.shape)
  const expected = entry.shape.reduce((n, d) => n * BigInt(d), BigInt(entry.dtype.itemsize))
  if (!Number.isSafeInteger(entry.nbytes) || BigInt(entry.nbytes) !== expected) {
    throw new RangeError(`npz: ${name}: nbytes ${entry.nbytes} is not the ${expected} bytes of shape (${entry.shape.join(', ')}) ${entry.dtype.descr}`)
  }
  const size = preamble.length + entry.nbytes
  const flags = FLAG_DESCRIPTOR | (bytes.length === name.length ? 0 : FLAG_UTF8) // equal lengths: all ASCII
  const zip64 = force || size >= U32 || offset >= U32
  return { member: { name: Buffer.concat([bytes, Buffer.from('.npy')]), flags, zip64, offset, size, crc: 0 }, preamble }
}

function localHeader (m: Member): Buffer {
  const b = Buffer.alloc(localSize(m))
  b.writeUInt32LE(0x04034b50, 0)
  b.writeUInt16LE(m.zip64 ? VERSION_ZIP64 : VERSION, 4)
  b.writeUInt16LE(m.flags, 6)
  b.writeUInt16LE(DOS_DATE, 12) // method 0 (STORED), time 00:00, CRC 0: it follows in the descriptor
  b.writeUInt32LE(m.zip64 ? U32 : m.size, 18)
  b.writeUInt32LE(m.zip64 ? U32 : m.size, 22)
  b.writeUInt16LE(m.name.length, 26)
  b.writeUInt16LE(m.zip64 ? 20 : 0, 28)
  m.name.copy(b, 30)
  if (m.zip64) zip64Extra(b, 30 + m.name.length, [m.size, m.size])
  return b
}

function descriptor (m: Member): Buffer {
  const b = Buffer.alloc(descriptorSize(m))
  b.writeUInt32LE(0x08074b50, 0)
  b.writeUInt32LE(m.crc, 4)
  // Readers take 8-byte sizes here exactly when the local header has a ZIP64 extra field.
  if (m.zip64) [8, 16].forEach((at) => b.writeBigUInt64LE(BigInt(m.size), at))
  else [8, 12].forEach((at) => b.writeUInt32LE(m.size, at))
  return b
}

function centralHeader (m: Member): Buffer {
  const b = Buffer.alloc(centralSize(m))
  b.writeUInt32LE(0x02014b50, 0)
  b.writeUInt16LE(MADE_BY_UNIX | (m.zip64 ? VERSION_ZIP64 : VERSION), 4)
  b.writeUInt16LE(m.zip64 ? VERSION_ZIP64 : VERSION, 6)
  b.writeUInt16LE(m.flags, 8)
  b.writeUInt16LE(DOS_DATE, 14)
  b.writeUInt32LE(m.crc, 16)
  b.writeUInt32LE(m.zip64 ? U32 : m.size, 20)
  b.writeUInt32LE(m.zip64 ? U32 : m.size, 24)
  b.writeUInt16LE(m.name.length, 28)
  b.writeUInt16LE(m.zip64 ? 28 : 0, 30)
  b.writeUInt32LE(FILE_MODE, 38)
  b.writeUInt32LE(m.zip64 ? U32 : m.offset, 42)
  m.name.copy(b, 46)
  if (m.zip64) zip64Extra(b, 46 + m.name.length, [m.size, m.size, m.offset])
  return b
}

function zip64Extra (b: Buffer, at: number, values: number[]): void {
  b.writeUInt16LE(0x0001, at)
  b.writeUInt16LE(8 * values.length, at + 2)
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), at + 4 + 8 * i))
}

const needsZip64End = (count: number, size: number, offset: number, force: boolean): boolean =>
  force || count >= U16 || size >= U32 || offset >= U32

/** The end records: ZIP64 end record and locator when needed (classic fields then all 0xFF..), then the classic one. */
function end (count: number, size: number, offset: number, force: boolean): Buffer {
  const zip64 = needsZip64End(count, size, offset, force)
  const b = Buffer.alloc(zip64 ? 98 : 22)
  let at = 0
  if (zip64) {
    b.writeUInt32LE(0x06064b50, 0)
    b.writeBigUInt64LE(44n, 4)
    b.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 12)
    b.writeUInt16LE(VERSION_ZIP64, 14)
    ;[count, count, size, offset].forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 24 + 8 * i))
    b.writeUInt32LE(0x07064b50, 56)
    b.writeBigUInt64LE(BigInt(offset + size), 64)
    b.writeUInt32LE(1, 72)
    at = 76
  }
  b.writeUInt32LE(0x06054b50, at)
  b.writeUInt16LE(zip64 ? U16 : count, at + 8)
  b.writeUInt16LE(zip64 ? U16 : count, at + 10)
  b.writeUInt32LE(zip64 ? U32 : size, at + 12)
  b.writeUInt32LE(zip64 ? U32 : offset, at + 16)
  return b
}

/** The exact byte length npzStream produces for these entries (for Content-Length); throws as npzStream would. */
export function npzSize (entries: Spec[], options: NpzOptions = {}): number {
  const force = options.forceZip64 ?? false
  const seen = new Set<string>()
  let offset = 0
  let central = 0
  for (const entry of entries) {
    const { member } = layout(entry, offset, seen, force)
    offset += localSize(member) + member.size + descriptorSize(member)
    central += centralSize(member)
  }
  return offset + central + end(entries.length, central, offset, force).length
}

async function * generate (entries: Iterable<NpzEntry> | AsyncIterable<NpzEntry>, force: boolean): AsyncGenerator<Uint8Array> {
  const members: Member[] = []
  const seen = new Set<string>()
  let offset = 0
  for await (const entry of entries) {
    const { member, preamble } = layout(entry, offset, seen, force)
    yield Buffer.concat([localHeader(member), preamble])
    let crc = crc32(preamble)
    let count = 0
    for await (const chunk of await entry.open()) {
      count += chunk.byteLength
      if (count > entry.nbytes) throw new NpzDataError(`${entry.name}: the source yielded more than its ${entry.nbytes} bytes`)
      if (chunk.byteLength === 0) continue
      crc = crc32(chunk, crc)
      yield chunk
    }
    if (count !== entry.nbytes) throw new NpzDataError(`${entry.name}: the source yielded ${count} of its ${entry.nbytes} bytes`)
    member.crc = crc
    yield descriptor(member)
    members.push(member)
    offset += localSize(member) + member.size + descriptorSize(member)
  }
  let central = 0
  for (const m of members) {
    const header = centralHeader(m)
    central += header.length
    yield header
  }
  yield end(members.length, central, offset, force)
}

/**
 * The archive as a byte stream that pulls entries, and each entry's source, only as fast as it is read: a source
 * chunk is requested only when the consumer has drained the previous ones (Readable.from stops at push() === false).
 * destroy() ends the pull and calls return() on the source; a throwing or miscounting source destroys the stream.
 * An array of entries is validated before the stream exists; a lazy iterable, when each entry is reached.
 */
export function npzStream (entries: Iterable<NpzEntry> | AsyncIterable<NpzEntry>, options: NpzOptions = {}): Readable {
  const force = options.forceZip64 ?? false
  if (Array.isArray(entries)) npzSize(entries, options)
  return Readable.from(generate(entries, force), { objectMode: false })
}
