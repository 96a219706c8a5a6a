import type { Socket } from 'node:net'
import { peerCredentials, peerGroups, peerPidfd, type PeerCredentials } from '../../native/peer.js'
import { pidfdOpen } from '../../native/process.js'
import { isSysError } from '../../native/sys-error.js'

/** A connection on the Unix socket, as the kernel described its process at connect(): read once, kept with it. */
export interface Peer extends PeerCredentials {
  /** Supplementary groups (SO_PEERGROUPS), with the primary gid first. */
  groups: number[]
  /** A pidfd for the connected process; the caller closes it. */
  pidfd: () => number
}

const peers = new WeakMap<Socket, Peer>()

/** Node keeps the accepted descriptor on the socket's libuv handle; it has no public accessor. */
function fdOf (socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no descriptor (closed already)')
  return fd
}

/** Reads and keeps the peer's credentials; throws if the kernel cannot give them (then the connection goes). */
export function rememberPeer (socket: Socket): void {
  const fd = fdOf(socket)
  const cred = peerCredentials(fd)
  const groups = [cred.gid, ...peerGroups(fd).filter((g) => g !== cred.gid)]
  const pidfd = (): number => {
    try {
      return peerPidfd(fdOf(socket))
    } catch (err) {
      // Before Linux 6.5: the pid as it is now, which only a process exiting mid-request could make stale.
      if (isSysError(err, 'ENOPROTOOPT') && cred.pid > 0) return pidfdOpen(cred.pid)
      throw err
    }
  }
  peers.set(socket, { ...cred, groups, pidfd })
}

/** The peer of a connection accepted on the Unix socket; undefined for TCP connections. */
export const peerOf = (socket: Socket): Peer | undefined => peers.get(socket)
