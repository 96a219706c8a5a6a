import * as shm from './shm.js'
import { isSysError } from './sys-error.js'

export interface CreateOptions {
  /** File size in bytes; never below 1, since Python cannot mmap an empty file. */
  size: number
  /** Applied with fchmod after creation (when the umask left another mode) so that the umask has no say. */
  mode: number
  owner?: { uid: number, gid: number } | undefined
  /** Back every page now (posix_fallocate) so a full /dev/shm fails here and not as SIGBUS in a client. */
  reserve: boolean
  /** Hand the fd back open (`Created.fd`, the caller's to close) instead of closing it. */
  keepOpen?: boolean
}

export interface Created extends shm.Identity {
  name: string
  size: number
  /** With `keepOpen`: the file, open read-write. */
  fd?: number | undefined
}

/**
 * Creates a segment fully configured, or leaves nothing behind. Synchronous (no promise per file) unless its
 * pages are reserved on the thread pool; a name that exists already throws EEXIST synchronously either way.
 */
export function createSegment (name: string, opts: CreateOptions): Created | Promise<Created> {
  const fd = shm.createExclusive(name, 0o600)
  let made: Created
  try {
    const st = shm.stat(fd)
    // Created 0600 less the umask: one syscall fewer when that is the mode asked for already.
    if ((st.mode & 0o7777) !== (opts.mode & 0o7777)) shm.chmod(fd, opts.mode)
    if (opts.owner !== undefined) shm.chown(fd, opts.owner.uid, opts.owner.gid)
    shm.truncate(fd, opts.size)
    // One object of one shape, fd included: the create of a many-tensor request makes one per tensor.
    made = { name, size: opts.size, ino: st.ino, dev: st.dev, fd: undefined }
    if (opts.reserve && !shm.reservesInline(opts.size)) return reserveLater(made, fd, opts.keepOpen === true)
    if (opts.reserve) shm.reserveNow(fd, opts.size)
  } catch (err) {
    abandon(name, fd)
    throw err
  }
  return handOver(made, fd, opts.keepOpen === true)
}

async function reserveLater (made: Created, fd: number, keepOpen: boolean): Promise<Created> {
  try {
    await shm.reserve(fd, made.size)
  } catch (err) {
    abandon(made.name, fd)
    throw err
  }
  return handOver(made, fd, keepOpen)
}

function abandon (name: string, fd: number): void {
  try { unlinkQuietly(name) } finally { shm.close(fd) }
}

function handOver (made: Created, fd: number, keepOpen: boolean): Created {
  if (keepOpen) made.fd = fd
  else shm.close(fd)
  return made
}

/** Unlinks a name we own; a name someone else removed already is not an error. Returns whether we removed it. */
export function unlinkQuietly (name: string): boolean {
  try {
    shm.unlink(name)
    return true
  } catch (err) {
    if (isSysError(err, 'ENOENT')) return false
    throw err
  }
}

/** What makes a file under a name ours: its owner, and the inode we recorded (or, before we knew it, one link only). */
export interface Expected {
  uid: number
  identity?: shm.Identity | undefined
}

export type Probe =
  | { kind: 'ours', fd: number, stat: shm.Stat }
  | { kind: 'missing' }
  /** Something else is there: a symlink, a FIFO, a directory, another inode, another owner, or a file we may not open. */
  | { kind: 'foreign', why: string }

/** Running out of descriptors says nothing about the file: those errors propagate. */
const RESOURCE = new Set(['EMFILE', 'ENFILE', 'ENOMEM'])

/**
 * Opens `name` without following a link or waiting on a FIFO, and keeps the fd only if the file is the one we
 * expect. Whatever else is there is reported, never read, written or unlinked.
 */
export function probe (name: string, expected: Expected, writable = false): Probe {
  let fd: number
  try {
    fd = shm.open(name, writable)
  } catch (err) {
    if (isSysError(err, 'ENOENT')) return { kind: 'missing' }
    if (isSysError(err) && !RESOURCE.has(err.code)) return { kind: 'foreign', why: err.code === 'ELOOP' ? 'a symbolic link' : `open: ${err.code}` }
    throw err
  }
  let why: string | undefined
  let stat: shm.Stat | undefined
  try {
    stat = shm.stat(fd)
    const { identity } = expected
    if (!stat.regular) why = 'not a regular file'
    else if (stat.uid !== expected.uid) why = `owned by uid ${stat.uid}`
    else if (identity !== undefined && (stat.ino !== identity.ino || stat.dev !== identity.dev)) why = 'another inode'
    else if (identity === undefined && stat.nlink !== 1) why = `${stat.nlink} links`
  } catch (err) {
    shm.close(fd)
    throw err
  }
  if (why === undefined) return { kind: 'ours', fd, stat }
  shm.close(fd)
  return { kind: 'foreign', why }
}

export type Inspection = { kind: 'ours', stat: shm.Stat } | { kind: 'missing' } | { kind: 'foreign', why: string }

/** What `probe` finds, without keeping the file open. */
export function inspect (name: string, expected: Expected): Inspection {
  const found = probe(name, expected)
  if (found.kind !== 'ours') return found
  shm.close(found.fd)
  return { kind: 'ours', stat: found.stat }
}

/** Unlinks `name` only if it is still ours; returns whether it did. */
export function unlinkIfOurs (name: string, expected: Expected): boolean {
  return inspect(name, expected).kind === 'ours' && unlinkQuietly(name)
}
