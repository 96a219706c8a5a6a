import { Readable } from 'node:stream'
import { readRange, writevAt } from '../../native/io.js'
import { checkClaim } from '../segments/spec.js'
import { CodecError } from '../codecs/codec-error.js'
import { errors } from '../errors.js'
import { NPY_FIXED_BYTES, NpyHeaderError, npyHeader, npyPreambleLength, parseNpyHeader } from '../codecs/npy.js'
import type { SegmentRecord } from '../segments/registry.js'
import type { Handle, SegmentService } from '../segments/service.js'

export const NPY = 'application/x-npy'
export const RAW = 'application/octet-stream'
const MAX_PREAMBLE = 1 << 20

export interface TensorBody { type: string, length: number, body: Readable }

/** Streams a tensor out of its segment from its own fd, in constant memory; the fd closes however the stream ends. */
export function readTensor (service: SegmentService, record: SegmentRecord, type: string): TensorBody {
  const handle = service.open(record, false)
  const header = type === NPY ? npyHeader(record.dtype, record.shape) : Buffer.alloc(0)
  async function * chunks (): AsyncGenerator<Buffer> {
    try {
      if (header.length > 0) yield header
      yield * readRange(handle.fd, 0, record.nbytes)
    } finally {
      handle.close()
    }
  }
  return { type, length: header.length + record.nbytes, body: Readable.from(chunks(), { objectMode: false }) }
}

/**
 * Writes a request body into a segment. Every check that can refuse the upload (length, npy header) runs
 * before the first byte is written.
 */
export async function writeTensor (service: SegmentService, record: SegmentRecord, type: string, length: number, body: AsyncIterable<Buffer>): Promise<number> {
  const iterator = body[Symbol.asyncIterator]()
  let first: Buffer = Buffer.alloc(0)
  if (type === NPY) {
    first = await readPreamble(record, iterator, length)
  } else if (length !== record.nbytes) {
    throw new errors.LengthMismatch(`Content-Length: ${length} bytes, but segment "${record.name}" holds ${record.nbytes}`)
  }
  const handle = service.open(record, true)
  try {
    return await copyInto(handle, first, iterator)
  } finally {
    handle.close()
  }
}

/** Network chunks are small (64 KiB); gathering them into writes of this size saves most thread-pool trips. */
const BATCH = 1 << 20

async function copyInto (handle: Handle, first: Buffer, iterator: AsyncIterator<Buffer>): Promise<number> {
  const { fd, record } = handle
  let position = 0
  let batch: Buffer[] = first.length > 0 ? [first] : []
  let batched = first.length
  const flush = async () => {
    if (batched === 0) return
    await writevAt(fd, batch, position)
    position += batched
    batch = []
    batched = 0
  }
  for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
    if (position + batched + next.value.length > record.nbytes) throw new errors.LengthMismatch(`body: more than the segment's ${record.nbytes} bytes`)
    batch.push(next.value)
    batched += next.value.length
    if (batched >= BATCH) await flush()
  }
  await flush()
  if (position !== record.nbytes) throw new errors.LengthMismatch(`body: ${position} of ${record.nbytes} bytes arrived`)
  return position
}

/** Reads until the npy preamble is complete, checks it against the registered spec, returns the data bytes read with it. */
async function readPreamble (record: SegmentRecord, iterator: AsyncIterator<Buffer>, length: number): Promise<Buffer> {
  // Pieces are kept apart until the fixed part's header length says the preamble is all here, then joined once:
  // joining and parsing after every piece made a 1 MiB header sent 16 bytes at a time quadratic.
  const pieces: Buffer[] = []
  let total = 0
  let preamble: number | undefined
  for (;;) {
    try {
      // At most NPY_FIXED_BYTES are copied per piece, and only until the fixed part is complete.
      preamble ??= npyPreambleLength(Buffer.concat(pieces, Math.min(total, NPY_FIXED_BYTES)))
      if (preamble !== undefined && total >= preamble) return checkPreamble(record, Buffer.concat(pieces, total), length)
    } catch (err) {
      if (err instanceof NpyHeaderError) throw new CodecError(err.kind, `body: ${err.message}`)
      throw err
    }
    if (total > MAX_PREAMBLE) throw new errors.InvalidNpy('body: the npy header is over 1 MiB')
    const next = await iterator.next()
    if (next.done === true) throw new errors.InvalidNpy('body: the body ended inside the npy header')
    pieces.push(next.value)
    total += next.value.length
  }
}

function checkPreamble (record: SegmentRecord, buf: Buffer, length: number): Buffer {
  const header = parseNpyHeader(buf)
  if (header === undefined) throw new Error('npy: a preamble of its full length must parse')
  checkClaim(record, { dtype: header.descr, shape: header.shape, fortranOrder: header.fortranOrder }, 'body (npy header)')
  if (length !== header.headerLength + record.nbytes) {
    throw new errors.LengthMismatch(`Content-Length: ${length} bytes, but an npy of this tensor is ${header.headerLength + record.nbytes}`)
  }
  return buf.subarray(header.headerLength)
}
