import { read, write, writeSync, writev } from 'node:fs'
import { promisify } from 'node:util'

const readAsync = promisify(read)
const writeAsync = promisify(write)
const writevAsync = promisify(writev)

/** 1.5 MiB: divisible by 3 and by every itemsize, so base64 and element boundaries fall on chunk boundaries. */
export const CHUNK = 3 * 2 ** 19

/** The file ended before `expected` bytes: someone truncated the segment while we read it. */
export class ShortReadError extends Error {
  constructor (readonly got: number, readonly expected: number) {
    super(`short read: the file ended after ${got} of ${expected} bytes`)
    this.name = 'ShortReadError'
  }
}

/**
 * Reads [start, start+length) with pread on the thread pool. pread past a truncated end returns 0 bytes:
 * a clean error here, where touching an mmap'ed page there would kill the process with SIGBUS.
 */
export async function * readRange (fd: number, start: number, length: number, chunk = CHUNK): AsyncGenerator<Buffer> {
  let done = 0
  while (done < length) {
    const want = Math.min(chunk, length - done)
    const buf = Buffer.allocUnsafe(want)
    let filled = 0
    while (filled < want) {
      const { bytesRead } = await readAsync(fd, buf, filled, want - filled, start + done + filled)
      if (bytesRead === 0) throw new ShortReadError(done + filled, length)
      filled += bytesRead
    }
    done += want
    yield buf
  }
}

/** pwrite of the whole buffer at `position`, however many calls it takes. */
export async function writeAt (fd: number, data: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < data.length) {
    const { bytesWritten } = await writeAsync(fd, data, off, data.length - off, position + off)
    off += bytesWritten
  }
}

/** pwritev of all `chunks` at `position`: one thread-pool trip for many small network chunks. */
export async function writevAt (fd: number, chunks: Buffer[], position: number): Promise<void> {
  let rest = chunks
  let at = position
  while (rest.length > 0) {
    let { bytesWritten } = await writevAsync(fd, rest, at)
    at += bytesWritten
    // A short write (rare on tmpfs) resumes inside the first chunk it did not finish.
    while (rest.length > 0 && bytesWritten >= (rest[0]?.length ?? 0)) { bytesWritten -= rest[0]?.length ?? 0; rest = rest.slice(1) }
    if (bytesWritten > 0 && rest[0] !== undefined) rest = [rest[0].subarray(bytesWritten), ...rest.slice(1)]
  }
}

const ZEROS = Buffer.alloc(CHUNK)
/** Below this, zeroing on the event loop (microseconds) beats a round trip to the thread pool. */
const SYNC_ZERO_BYTES = 1 << 20

/** Whether zeroing `size` bytes is quick enough for the event loop (see zeroSync). */
export const zeroesInline = (size: number): boolean => size <= SYNC_ZERO_BYTES

/** zeroFill on this thread, for sizes zeroesInline accepts. */
export function zeroSync (fd: number, size: number): void {
  for (let at = 0; at < size;) at += writeSync(fd, ZEROS, 0, Math.min(CHUNK, size - at), at)
}

/** Overwrites [0, size) with zeros through pwrite: pages that exist are reused, none is mapped. */
export async function zeroFill (fd: number, size: number): Promise<void> {
  if (zeroesInline(size)) { zeroSync(fd, size); return }
  for (let at = 0; at < size; at += CHUNK) await writeAt(fd, ZEROS.subarray(0, Math.min(CHUNK, size - at)), at)
}
