import * as libc from './libc.js'
import { SysError } from './sys-error.js'

/** What the kernel recorded about the process at the other end of a Unix socket when it connected. */
export interface PeerCredentials { pid: number, uid: number, gid: number }

/** SO_PEERCRED: pid (0 when the peer is outside this pid namespace), uid and gid, as of connect(). */
export function peerCredentials (fd: number): PeerCredentials {
  const buf = Buffer.alloc(12)
  libc.checked('getsockopt SO_PEERCRED', libc.getsockopt(fd, libc.SOL_SOCKET, libc.SO_PEERCRED, buf, [12]))
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) }
}

/** SO_PEERGROUPS: the peer's supplementary groups as of connect(), whatever the request later claims. */
export function peerGroups (fd: number): number[] {
  for (let room = 64; ; room *= 4) {
    const buf = Buffer.alloc(room * 4)
    const len: [number] = [buf.length]
    if (libc.getsockopt(fd, libc.SOL_SOCKET, libc.SO_PEERGROUPS, buf, len) === 0) {
      return Array.from({ length: Math.floor(len[0] / 4) }, (_, i) => buf.readUInt32LE(i * 4))
    }
    // ERANGE says how much room the list needs (NGROUPS_MAX is 65536).
    const errno = libc.errno()
    if (errno !== 34 /* ERANGE */ || room >= 65536) throw new SysError('getsockopt SO_PEERGROUPS', errno)
  }
}

/**
 * SO_PEERPIDFD: a pidfd for the very process that connected, which no reuse of its pid can confuse. The caller
 * closes it. ENOPROTOOPT before Linux 6.5.
 */
export function peerPidfd (fd: number): number {
  const buf = Buffer.alloc(4)
  libc.checked('getsockopt SO_PEERPIDFD', libc.getsockopt(fd, libc.SOL_SOCKET, libc.SO_PEERPIDFD, buf, [4]))
  return buf.readInt32LE(0)
}
