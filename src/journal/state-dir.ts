import { lstatSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { exchangeForNewDir, openDirPath, openFileAt, renameAt, unlinkAt, type Component } from '../../native/dir.js'
import { isSysError } from '../../native/sys-error.js'
import { close as closeFd, lockExclusive, stat as fstat, type Stat } from '../../native/shm.js'

/** The state directory cannot be trusted or used: the start stops, and the message says what and where. */
export class StateDirError extends Error {
  override name = 'StateDirError'
  /** The path of a component someone else put into a sticky, world-writable directory (/dev/shm, /tmp). */
  constructor (message: string, readonly squatted?: string) { super(message) }
}

/** A directory anyone may create names in, but only their owner (or root) can move or remove them. */
const sticky = (c: Component | undefined): boolean => c !== undefined && (c.stat.mode & 0o1002) === 0o1002

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
  const walk: { parent?: Component } = {}
  const check = (c: Component): void => {
    const { path, stat, last } = c
    const where = `${path} (owner uid ${stat.uid}, mode ${octal(stat.mode)})`
    const squatted = sticky(walk.parent) ? path : undefined
    if (last) {
      if (stat.uid !== uid) throw new StateDirError(`the state directory ${where} is not owned by the service's uid ${uid}; someone else may have created it`, squatted)
      if ((stat.mode & 0o022) !== 0) throw new StateDirError(`the state directory ${where} is writable by its group or by others`)
    } else {
      if (stat.uid !== 0 && stat.uid !== uid) throw new StateDirError(`${where} is owned by another user, who could replace the state directory below it`, squatted)
      if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) throw new StateDirError(`${where} is writable by others without the sticky bit, so anyone could replace the state directory below it`)
    }
    walk.parent = c
  }
  return { check, parentIsSticky: () => sticky(walk.parent) }
}

/** Checks a file found inside the state directory; anything but our own regular file stops the start. */
function trustFile (path: string, stat: Stat, uid: number): void {
  if (!stat.regular) throw new StateDirError(`${path} is not a regular file`)
  if (stat.uid !== uid) throw new StateDirError(`${path} is owned by uid ${stat.uid}, not the service's uid ${uid}`)
  if (stat.nlink !== 1) throw new StateDirError(`${path} has ${stat.nlink} hard links`)
  if ((stat.mode & 0o022) !== 0) throw new StateDirError(`${path} (mode ${octal(stat.mode)}) is writable by its group or by others`)
}

/** The directory the journal lives in, opened, checked and locked: one instance per directory. */
export class StateDir {
  /** What another user had put in the way, moved aside at this start. */
  movedAside: string[] = []

  private constructor (readonly path: string, readonly fd: number, private readonly parent: number, private readonly name: string, readonly uid: number) {}

  /**
   * Opens, checks and locks `path`. Something another user put in its way in a sticky directory (a directory, a
   * symlink, a file under the name the service needs) is exchanged, in one atomic step, for a fresh directory of
   * the service's, and so moved aside, never entered or removed, where the service may do so (root, in practice);
   * `movedAside` lists what was, for the log. Anything else stops the start.
   */
  static open (path: string, uid: number): StateDir {
    const movedAside: string[] = []
    for (let attempt = 0; ; attempt++) {
      try {
        const dir = StateDir.#open(path, uid)
        dir.movedAside = movedAside
        return dir
      } catch (err) {
        if (!(err instanceof StateDirError) || err.squatted === undefined || attempt >= 8) throw err
        const aside = `${err.squatted}.squatted-${randomBytes(4).toString('hex')}`
        try {
          exchangeForNewDir(err.squatted, aside)
        } catch {
          throw err
        }
        movedAside.push(`${err.squatted} -> ${aside}`)
      }
    }
  }

  static #open (path: string, uid: number): StateDir {
    const trusted = trust(uid)
    let opened
    try {
      opened = openDirPath(path, true, trusted.check)
    } catch (err) {
      if (!isSysError(err)) throw err
      const at = err.syscall.replace(/^openat /, '')
      if (err.code === 'ENOTDIR' || err.code === 'ELOOP') throw new StateDirError(`${at} ${describe(at)}; the state directory must be a real directory path`, trusted.parentIsSticky() ? at : undefined)
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
