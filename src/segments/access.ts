import { errors } from '../errors.js'
import type { Caller } from './caller.js'

/** Who a segment's file belongs to, when it was given to a local caller rather than kept by the service. */
export interface FileAccess { uid: number, gid: number, mode: number }

/** A request to let one group of the caller's map a segment: read only, or read and write. */
export interface ShareRequest { group: number, access?: 'read' | 'read-write' }

/**
 * The owner and mode of a local caller's files: its uid and primary group with 0600, or one group it belongs to
 * (as the kernel says, never the request) with 0640 or 0660. Others get nothing: no instance-wide 0666. Callers by
 * key or anonymous keep the instance's TENSORSHM_SEGMENT_MODE and TENSORSHM_SEGMENT_OWNER (undefined here).
 */
export function fileAccess (caller: Caller, share: ShareRequest | undefined): FileAccess | undefined {
  if (caller.kind !== 'uid') {
    if (share !== undefined) throw new errors.LocalCallerRequired('share: only a caller on the Unix socket (TENSORSHM_SOCKET) owns its segments and can share them with a group')
    return undefined
  }
  if (share === undefined) return { uid: caller.uid, gid: caller.gid, mode: 0o600 }
  if (share.group !== caller.gid && !caller.groups.includes(share.group)) {
    throw new errors.GroupForbidden(`share.group: the calling process is not a member of group ${share.group}`)
  }
  return { uid: caller.uid, gid: share.group, mode: share.access === 'read-write' ? 0o660 : 0o640 }
}

export const isFileAccess = (v: unknown): v is FileAccess => {
  if (typeof v !== 'object' || v === null) return false
  const { uid, gid, mode } = v as Record<string, unknown>
  const id = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xfffffffe
  return id(uid) && id(gid) && typeof mode === 'number' && Number.isInteger(mode) && (mode & ~0o660) === 0 && (mode & 0o600) === 0o600
}
