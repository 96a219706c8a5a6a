import { lchownSync, lstatSync, realpathSync, unlinkSync, type Stats } from 'node:fs'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import { basename, dirname } from 'node:path'
import type { Config } from '../config.js'

type SocketConfig = NonNullable<Config['socket']>

/** TENSORSHM_SOCKET cannot be used; the message says what is in the way. Nothing at the path was touched. */
export class SocketPathError extends Error {
  override name = 'SocketPathError'
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0')
const lstatOrUndefined = (path: string): Stats | undefined => {
  try {
    return lstatSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new SocketPathError(`cannot look at ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

/**
 * Every directory from / down to `dir` must belong to root or to this uid and be writable by nobody else, unless
 * sticky (/tmp, /dev/shm: there only a name's owner can replace it). Otherwise someone could swap the socket
 * between these checks and the bind, or replace it afterwards.
 */
function checkDirectories (dir: string, uid: number): void {
  let path = ''
  for (const part of ['', ...dir.split('/').filter((p) => p !== '')]) {
    path = part === '' ? '/' : `${path === '/' ? '' : path}/${part}`
    const st = lstatOrUndefined(path)
    if (st === undefined || !st.isDirectory()) throw new SocketPathError(`${path} is not a directory`)
    if (st.uid !== 0 && st.uid !== uid) throw new SocketPathError(`the directory ${path} belongs to uid ${st.uid}, neither root nor this service`)
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw new SocketPathError(`the directory ${path} (mode ${octal(st.mode)}) is writable by its group or others without the sticky bit`)
  }
}

/**
 * The path as configured, component by component: a symbolic link on the way must belong to root or this uid. In a
 * sticky directory (/tmp) anyone may plant a link before the service starts, and its owner may repoint it later,
 * sending every client that connects by the configured path to a socket of theirs.
 */
function checkLinks (dir: string, uid: number): void {
  let path = ''
  for (const part of dir.split('/').filter((p) => p !== '')) {
    path = `${path}/${part}`
    const st = lstatOrUndefined(path)
    if (st?.isSymbolicLink() === true && st.uid !== 0 && st.uid !== uid) throw new SocketPathError(`${path} is a symbolic link of uid ${st.uid}, neither root nor this service: it could be repointed later`)
  }
}

/** 'live' when a process accepts connections there, 'stale' when nobody does (ECONNREFUSED), else the error code. */
async function probe (path: string): Promise<string> {
  return await new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve('live') })
    s.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code === 'ECONNREFUSED' ? 'stale' : err.code ?? 'error') })
  })
}

/**
 * Where the socket goes, checked before the service starts: the directory's real path (so that no symlink above
 * it can be repointed later), free, or holding a stale socket of this uid that nobody listens on, which is
 * removed. A symlink, any other file, another uid's socket or a live socket stops the start, untouched.
 */
export async function prepareSocketPath (socket: SocketConfig, uid: number): Promise<{ path: string, replaced: boolean }> {
  checkLinks(dirname(socket.path), uid)
  let dir: string
  try {
    dir = realpathSync(dirname(socket.path))
  } catch (err) {
    throw new SocketPathError(`the directory ${dirname(socket.path)} cannot be used (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  checkDirectories(dir, uid)
  const path = `${dir === '/' ? '' : dir}/${basename(socket.path)}`
  if (Buffer.byteLength(path) > 107) throw new SocketPathError(`${path} is longer than the 107 bytes a Unix socket address holds`)
  const st = lstatOrUndefined(path)
  if (st === undefined) return { path, replaced: false }
  if (st.isSymbolicLink()) throw new SocketPathError(`${path} is a symbolic link; nothing was changed (remove it if nobody needs it)`)
  if (!st.isSocket()) throw new SocketPathError(`${path} exists and is not a socket; nothing was changed`)
  if (st.uid !== uid) throw new SocketPathError(`${path} is a socket of uid ${st.uid}, not this service's; nothing was changed`)
  const state = await probe(path)
  if (state === 'live') throw new SocketPathError(`another process is listening on ${path}; nothing was changed`)
  if (state !== 'stale') throw new SocketPathError(`cannot tell whether the socket at ${path} is in use (${state}); nothing was changed`)
  unlinkSync(path)
  return { path, replaced: true }
}

/**
 * Binds the Unix socket with exactly TENSORSHM_SOCKET_MODE: the umask is set around the bind (which Node does
 * synchronously in listen), so the socket never exists with wider permissions and no chmod follows a path.
 */
export async function listenOnSocket (server: Server, path: string, socket: SocketConfig, uid: number): Promise<void> {
  const listening = new Promise<void>((resolve, reject) => {
    server.once('listening', resolve)
    server.once('error', reject)
  })
  const umask = process.umask(0o777 & ~socket.mode)
  try {
    server.listen(path)
  } finally {
    process.umask(umask)
  }
  try {
    await listening
  } catch (err) {
    throw new SocketPathError(`cannot listen on ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}); nothing was changed`)
  }
  // lchown: never through a symlink, should one have replaced the socket (only root or this uid could).
  if (socket.group !== undefined) lchownSync(path, uid, socket.group)
}
