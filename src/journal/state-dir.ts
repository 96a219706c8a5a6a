import { lstatSync } from 'node:fs'
import { closeFd, openDirPath, openFileAt, renameAt, unlinkAt, type Component } from '../../native/dir.js'
import { isSysError } from '../../native/sys-error.js'
import { lockExclusive, stat as fstat, type Stat } from '../../native/shm.js'

/** The state directory cannot be trusted or used: the start stops, and the message says what and where. */
export class StateDirError extends Error {
  override name = 'StateDirError'
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`

function describe (path: string): string {
  const st = lstatSync(path, { throwIfNoEntry: false })
  if (st === undefined) return 'is missing'
  if (st.isSymbolicLink()) return 'is a symbolic link'
  if (!st.isDirectory()) return 'is not a directory'
  return 'cannot be opened'
}

/**
 * What the service may trust: every directory on the way is owned by root or by the service and writable by
 * nobody else (unless sticky, like /dev/shm and /tmp, where only a name's owner can replace it); the state
 * directory itself belongs to the service and nobody else may write to it.
 */
function trust (uid: number) {
  return ({ path, stat, last }: Component): void => {
    const where = `${path} (owner uid ${stat.uid}, mode ${octal(stat.mode)})`
    if (last) {
      if (stat.uid !== uid) throw new StateDirError(`the state directory ${where} is not owned by the service's uid ${uid}; someone else may have created it`)
      if ((stat.mode & 0o022) !== 0) throw new StateDirError(`the state directory ${where} is writable by its group or by others`)
      return
    }
    if (stat.uid !== 0 && stat.uid !== uid) throw new StateDirError(`${where} is owned by another user, who could replace the state directory below it`)
    if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) throw new StateDirError(`${where} is writable by others without the sticky bit, so anyone could replace the state directory below it`)
  }
}

/** Checks a file found inside the state directory; anything but our own regular file stops the start. */
export function trustFile (path: string, stat: Stat, uid: number): void {
  if (!stat.regular) throw new StateDirError(`${path} is not a regular file`)
  if (stat.uid !== uid) throw new StateDirError(`${path} is owned by uid ${stat.uid}, not the service's uid ${uid}`)
  if (stat.nlink !== 1) throw new StateDirError(`${path} has ${stat.nlink} hard links`)
  if ((stat.mode & 0o022) !== 0) throw new StateDirError(`${path} (mode ${octal(stat.mode)}) is writable by its group or by others`)
}

/** The directory the journal lives in, opened, checked and locked: one instance per directory. */
export class StateDir {
  private constructor (readonly path: string, readonly fd: number, private readonly parent: number, private readonly name: string, readonly uid: number) {}

  static open (path: string, uid: number): StateDir {
    let opened
    try {
      opened = openDirPath(path, true, trust(uid))
    } catch (err) {
      if (!isSysError(err)) throw err
      const at = err.syscall.replace(/^openat /, '')
      if (err.code === 'ENOTDIR' || err.code === 'ELOOP') throw new StateDirError(`${at} ${describe(at)}; the state directory must be a real directory path`)
      throw new StateDirError(`cannot open the state directory ${path}: ${err.syscall} failed with ${err.code}`)
    }
    const dir = new StateDir(path, opened.fd, opened.parent, opened.name, uid)
    try {
      // flock on the directory itself: no lock file to plant, and the kernel drops it however the holder dies.
      lockExclusive(opened.fd)
    } catch (err) {
      dir.close(false)
      if (isSysError(err, 'EAGAIN')) throw new StateDirError(`another tensorshm instance holds ${path}; give each instance its own TENSORSHM_STATE_DIR`)
      throw err
    }
    return dir
  }

  /** Opens a file of ours inside the directory, checking that it is one. */
  openFile (name: string, mode: 'read' | 'append' | 'create'): number {
    let opened
    try {
      opened = openFileAt(this.fd, name, mode)
    } catch (err) {
      if (isSysError(err, 'ELOOP')) throw new StateDirError(`${this.path}/${name} is a symbolic link`)
      throw err
    }
    try {
      trustFile(`${this.path}/${name}`, opened.stat, this.uid)
    } catch (err) {
      closeFd(opened.fd)
      throw err
    }
    return opened.fd
  }

  unlink (name: string): boolean {
    return unlinkAt(this.fd, name)
  }

  /** Replaces `to` with `from`, atomically. */
  rename (from: string, to: string): void {
    renameAt(this.fd, from, to)
  }

  /**
   * Releases the lock; `remove` also removes the (then empty) directory, unless others can write to its parent:
   * in /dev/shm itself, the name would be free for anyone to take before the next start.
   */
  close (remove: boolean): void {
    closeFd(this.fd)
    if (remove && (fstat(this.parent).mode & 0o022) === 0) {
      try { unlinkAt(this.parent, this.name, true) } catch {}
    }
    closeFd(this.parent)
  }
}
