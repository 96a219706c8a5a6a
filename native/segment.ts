import * as shm from './shm.js'
import { isSysError } from './errors.js'

export interface CreateOptions {
  /** File size in bytes; never below 1, since Python cannot mmap an empty file. */
  size: number
  /** Applied with fchmod after creation so that the process umask has no say. */
  mode: number
  owner?: { uid: number, gid: number } | undefined
  /** Back every page now (posix_fallocate) so a full /dev/shm fails here and not as SIGBUS in a client. */
  reserve: boolean
}

export interface Created extends shm.Identity {
  name: string
  size: number
}

/** Creates a segment fully configured, or leaves nothing behind. */
export async function createSegment (name: string, opts: CreateOptions): Promise<Created> {
  const fd = shm.createExclusive(name, 0o600)
  try {
    shm.chmod(fd, opts.mode)
    if (opts.owner !== undefined) shm.chown(fd, opts.owner.uid, opts.owner.gid)
    shm.truncate(fd, opts.size)
    if (opts.reserve) await shm.reserve(fd, opts.size)
    const st = shm.stat(fd)
    return { name, size: opts.size, ino: st.ino, dev: st.dev }
  } catch (err) {
    unlinkQuietly(name)
    throw err
  } finally {
    shm.close(fd)
  }
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

export type Presence = 'present' | 'missing' | 'replaced'

/** Whether the file we created is still there under its name (and is still the same inode). */
export function presence (name: string, identity: shm.Identity): Presence {
  let fd: number
  try {
    fd = shm.open(name, false)
  } catch (err) {
    if (isSysError(err, 'ENOENT')) return 'missing'
    throw err
  }
  try {
    const st = shm.stat(fd)
    return st.ino === identity.ino && st.dev === identity.dev ? 'present' : 'replaced'
  } finally {
    shm.close(fd)
  }
}
