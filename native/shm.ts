import { readFileSync, statfsSync } from 'node:fs'
import { unlink as unlinkFile } from 'node:fs/promises'
import * as libc from './libc.js'
import { SysError } from './sys-error.js'

/** Where glibc keeps POSIX shared-memory objects; names map to files here one to one. */
export const SHM_DIR = '/dev/shm'
/** NAME_MAX less the leading slash that shm_open wants. */
export const MAX_NAME_LENGTH = 254

export interface Stat {
  size: number
  ino: bigint
  dev: bigint
  nlink: number
  mode: number
  uid: number
  gid: number
  /** Bytes the file really holds in tmpfs pages: st_blocks x 512. */
  allocated: number
  /** A regular file: not a FIFO, socket, device, directory or anything else someone could put under a name. */
  regular: boolean
}

/** A file as created: its inode, and its owner when that is not the process's own uid (a file given away). */
export interface Identity { ino: bigint, dev: bigint, uid?: number }

/** Refuses anything shm_open would treat as a path: the name is the caller's responsibility, but never blindly. */
function shmPath (name: string): string {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new SysError('shm_open', 22 /* EINVAL */)
  }
  return '/' + name
}

/**
 * Anyone can put a FIFO or a symlink under a name that was freed: O_NONBLOCK keeps open() of a FIFO from waiting
 * for a writer (it would stall the event loop), O_NOFOLLOW makes a symlink ELOOP. Callers check `regular`.
 */
const SAFE = libc.O_NONBLOCK | libc.O_NOFOLLOW | libc.O_CLOEXEC

export function open (name: string, writable: boolean): number {
  return libc.checked('shm_open', libc.shm_open(shmPath(name), (writable ? libc.O_RDWR : libc.O_RDONLY) | SAFE, 0))
}

/** O_CREAT|O_EXCL: never adopts a file that someone else created under the same name. */
export function createExclusive (name: string, mode: number): number {
  return libc.checked('shm_open', libc.shm_open(shmPath(name), libc.O_CREAT | libc.O_EXCL | libc.O_RDWR | SAFE, mode & 0o777))
}

export function unlink (name: string): void {
  libc.checked('shm_unlink', libc.shm_unlink(shmPath(name)))
}

/**
 * unlink on the thread pool. Freeing a large tmpfs file happens inside the syscall (about 140 ms per GiB here),
 * which must not stall the event loop.
 */
export async function unlinkAsync (name: string): Promise<void> {
  shmPath(name)
  try {
    await unlinkFile(`${SHM_DIR}/${name}`)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).errno
    throw new SysError('unlink', typeof code === 'number' ? -code : 5 /* EIO */)
  }
}

export function close (fd: number): void {
  libc.checked('close', libc.close(fd))
}

export function truncate (fd: number, size: number): void {
  libc.checked('ftruncate', libc.ftruncate(fd, size))
}

export function chmod (fd: number, mode: number): void {
  libc.checked('fchmod', libc.fchmod(fd, mode & 0o7777))
}

export function chown (fd: number, uid: number, gid: number): void {
  libc.checked('fchown', libc.fchown(fd, uid, gid))
}

const statBuffer = Buffer.alloc(libc.STAT_LAYOUT.size)

export function stat (fd: number): Stat {
  libc.checked('fstat', libc.fstat(fd, statBuffer))
  return readStat(statBuffer)
}

/** What is under `name` now, without opening it or following a link (lstat); undefined when nothing is. */
export function statName (name: string): Stat | undefined {
  const rc = libc.fstatat(libc.AT_FDCWD, `${SHM_DIR}${shmPath(name)}`, statBuffer, libc.AT_SYMLINK_NOFOLLOW)
  if (rc !== 0 && libc.errno() === 2 /* ENOENT */) return undefined
  libc.checked('fstatat', rc)
  return readStat(statBuffer)
}

/** A 64-bit signed field as a Number, without the BigInt readBigInt64LE would allocate (sizes fit in 2^53). */
const int64 = (b: Buffer, at: number): number => b.readInt32LE(at + 4) * 0x1_0000_0000 + b.readUInt32LE(at)

function readStat (b: Buffer): Stat {
  const at = libc.STAT_LAYOUT
  const mode = b.readUInt32LE(at.mode)
  return {
    size: int64(b, at.st_size),
    ino: b.readBigUInt64LE(at.ino),
    dev: b.readBigUInt64LE(at.dev),
    nlink: at.nlinkBytes === 8 ? Number(b.readBigUInt64LE(at.nlink)) : b.readUInt32LE(at.nlink),
    mode,
    uid: b.readUInt32LE(at.uid),
    gid: b.readUInt32LE(at.gid),
    allocated: int64(b, at.blocks) * 512,
    regular: (mode & libc.S_IFMT) === libc.S_IFREG
  }
}

/**
 * Moves a segment to a new name in SHM_DIR, never over an existing file (RENAME_NOREPLACE: EEXIST instead).
 * Fails with ENOENT if the old name is gone.
 */
export function rename (from: string, to: string): void {
  shmPath(from)
  shmPath(to)
  libc.checked('renameat2', libc.renameat2(libc.AT_FDCWD, `${SHM_DIR}/${from}`, libc.AT_FDCWD, `${SHM_DIR}/${to}`, libc.RENAME_NOREPLACE))
}

/** Below this, posix_fallocate on the event loop (0.24 ms per MiB here) beats a round trip to the thread pool. */
const SYNC_RESERVE_BYTES = 1 << 20

/** Whether `reserve` of this size runs on the event loop, so that `reserveNow` may be used instead. */
export const reservesInline = (size: number): boolean => size <= SYNC_RESERVE_BYTES

/** `reserve` on the event loop, for sizes `reservesInline` accepts. */
export function reserveNow (fd: number, size: number): void {
  if (size === 0) return
  const rc = libc.posix_fallocate(fd, 0, size)
  if (rc !== 0) throw new SysError('posix_fallocate', rc)
}

/**
 * Reserves tmpfs pages for [0, size) so that a later page fault cannot SIGBUS the writer on a full /dev/shm.
 * Large sizes run on a worker thread: for gigabytes it takes most of a second.
 */
export async function reserve (fd: number, size: number): Promise<void> {
  if (reservesInline(size)) { reserveNow(fd, size); return }
  const rc = await new Promise<number>((resolve, reject) => {
    libc.posix_fallocate.async(fd, 0, size, (err: unknown, result: number) => {
      if (err != null) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve(result)
    })
  })
  if (rc !== 0) throw new SysError('posix_fallocate', rc)
}

/** Size and free bytes of the file system behind SHM_DIR (tmpfs: its memory limit), and its page size. */
export function capacity (): { total: number, free: number, pageSize: number } {
  const st = statfsSync(SHM_DIR)
  return { total: st.blocks * st.bsize, free: st.bavail * st.bsize, pageSize: st.bsize }
}

/**
 * Takes an exclusive flock on an open fd, or throws EWOULDBLOCK if another process holds it. The kernel drops
 * the lock when the holder dies, however it dies: no stale lock files, and it works across PID namespaces.
 */
export function lockExclusive (fd: number): void {
  libc.checked('flock', libc.flock(fd, libc.LOCK_EX | libc.LOCK_NB))
}

/** The soft limit on open files (RLIMIT_NOFILE) as the kernel reports it, or undefined where it cannot be read. */
export function openFileLimit (): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return m?.[1] === undefined || m[1] === 'unlimited' ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}
