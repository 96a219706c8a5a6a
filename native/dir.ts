import * as libc from './libc.js'
import { SysError } from './sys-error.js'
import { stat, type Stat } from './shm.js'

const DIR_FLAGS = libc.O_RDONLY | libc.O_DIRECTORY | libc.O_NOFOLLOW | libc.O_CLOEXEC

export interface Component {
  /** The absolute path up to and including this component. */
  path: string
  stat: Stat
  /** Whether the walk made it. */
  created: boolean
  last: boolean
}

/**
 * Opens an absolute directory path one component at a time, each relative to the fd of its parent and never
 * through a symlink (O_NOFOLLOW: ELOOP), so that nothing can be swapped in between the checks and the use.
 * Missing components are made with mode 0700 when `create` says so. `check` sees every component, `/` first,
 * before the walk goes into it, and throws to stop it. Returns the fds of the last component and its parent.
 */
export function openDirPath (path: string, create: boolean, checkComponent: (c: Component) => void): { fd: number, parent: number, name: string } {
  if (!path.startsWith('/')) throw new SysError('openat', 22 /* EINVAL */)
  const parts = path.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) throw new SysError('openat', 22 /* EINVAL */)
  let fd = libc.checked('openat', libc.openat(libc.AT_FDCWD, '/', DIR_FLAGS, 0))
  let parent = -1
  let here = ''
  try {
    checkComponent({ path: '/', stat: stat(fd), created: false, last: parts.length === 0 })
    for (const [i, part] of parts.entries()) {
      here += `/${part}`
      let created = false
      let next = libc.openat(fd, part, DIR_FLAGS, 0)
      if (next === -1 && libc.errno() === 2 /* ENOENT */ && create) {
        // EEXIST from a concurrent mkdir is fine: whatever is there now goes through the same checks.
        if (libc.mkdirat(fd, part, 0o700) === 0) created = true
        next = libc.openat(fd, part, DIR_FLAGS, 0)
      }
      if (next === -1) throw new SysError(`openat ${here}`, libc.errno())
      if (parent !== -1) libc.close(parent)
      parent = fd
      fd = next
      checkComponent({ path: here, stat: stat(fd), created, last: i === parts.length - 1 })
    }
    return { fd, parent, name: parts.at(-1) ?? '/' }
  } catch (err) {
    libc.close(fd)
    if (parent !== -1) libc.close(parent)
    throw err
  }
}

export type FileMode = 'read' | 'append' | 'create'

const FILE_FLAGS: Record<FileMode, number> = {
  read: libc.O_RDONLY,
  append: libc.O_WRONLY | libc.O_APPEND | libc.O_CREAT,
  // A file we are about to write from scratch: O_EXCL, so that nothing already there is reused.
  create: libc.O_WRONLY | libc.O_CREAT | libc.O_EXCL
}

/** Opens `name` inside the directory `dirfd`, never through a symlink and never blocking on a FIFO. */
export function openFileAt (dirfd: number, name: string, mode: FileMode): { fd: number, stat: Stat } {
  if (name.includes('/')) throw new SysError('openat', 22 /* EINVAL */)
  const fd = libc.checked(`openat ${name}`, libc.openat(dirfd, name, FILE_FLAGS[mode] | libc.O_NOFOLLOW | libc.O_NONBLOCK | libc.O_CLOEXEC, 0o600))
  try {
    return { fd, stat: stat(fd) }
  } catch (err) {
    libc.close(fd)
    throw err
  }
}

/** Replaces `to` with `from`, both inside `dirfd`, atomically. */
export function renameAt (dirfd: number, from: string, to: string): void {
  libc.checked(`renameat ${from}`, libc.renameat2(dirfd, from, dirfd, to, 0))
}

/** Unlinks a file (or, with `dir`, removes an empty directory) inside `dirfd`; a missing one is not an error. */
export function unlinkAt (dirfd: number, name: string, dir = false): boolean {
  if (libc.unlinkat(dirfd, name, dir ? libc.AT_REMOVEDIR : 0) === 0) return true
  const errno = libc.errno()
  if (errno === 2 /* ENOENT */) return false
  throw new SysError(`unlinkat ${name}`, errno)
}

/**
 * Puts a fresh, empty 0700 directory of ours under `path` in one step, whatever is there now: it is made under
 * `aside` and exchanged with `path` (RENAME_EXCHANGE), so the name is never free for someone else to take in
 * between. What was at `path` ends up at `aside`, not followed, entered or removed.
 */
export function exchangeForNewDir (path: string, aside: string): void {
  libc.checked(`mkdirat ${aside}`, libc.mkdirat(libc.AT_FDCWD, aside, 0o700))
  if (libc.renameat2(libc.AT_FDCWD, aside, libc.AT_FDCWD, path, libc.RENAME_EXCHANGE) === 0) return
  let errno = libc.errno()
  // Gone meanwhile: the name is free, and taking it must not replace whatever appears there first.
  if (errno === 2 /* ENOENT */ && libc.renameat2(libc.AT_FDCWD, aside, libc.AT_FDCWD, path, libc.RENAME_NOREPLACE) === 0) return
  errno = libc.errno()
  libc.unlinkat(libc.AT_FDCWD, aside, libc.AT_REMOVEDIR)
  throw new SysError(`renameat2 ${path}`, errno)
}
