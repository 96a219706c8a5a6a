/**
 * Who is asking. Anonymous callers (no API keys configured) share one view; a key sees only what it created; a
 * local user (a Unix-socket caller, named by the kernel) sees only what its uid created, unless it is an admin;
 * the operator view (the sweeper, shutdown, metrics) sees everything and is never given to a request.
 */
export type Caller =
  | { kind: 'anonymous' }
  | { kind: 'key', id: string }
  | LocalCaller
  | { kind: 'operator' }

/** A process on the Unix socket, as SO_PEERCRED and SO_PEERGROUPS described it when it connected. */
export interface LocalCaller {
  kind: 'uid'
  uid: number
  gid: number
  /** In the service's pid namespace; 0 when the caller's process is not visible from it. */
  pid: number
  /** Primary and supplementary groups, from the kernel: never from the request. */
  groups: readonly number[]
  /** uid 0 or one of TENSORSHM_ADMIN_UIDS: sees and releases every namespace. */
  admin: boolean
  /** A pidfd for the connected process (SO_PEERPIDFD), for release_on_exit; the caller closes it. */
  pidfd: () => number
}

export const ANONYMOUS: Caller = Object.freeze({ kind: 'anonymous' })
export const OPERATOR: Caller = Object.freeze({ kind: 'operator' })
export const keyCaller = (id: string): Caller => ({ kind: 'key', id })

/** The owner id of a local user: what records, claims and the journal carry. */
export const uidOwner = (uid: number): string => `uid:${uid}`

/** What a record stores as its owner: the key's id, `uid:<n>`, or null for anonymous callers. */
export function ownerOf (caller: Caller): string | null {
  if (caller.kind === 'operator') throw new Error('the operator view owns nothing and creates nothing')
  if (caller.kind === 'uid') return uidOwner(caller.uid)
  return caller.kind === 'key' ? caller.id : null
}

export function sees (caller: Caller, owner: string | null): boolean {
  return caller.kind === 'operator' || (caller.kind === 'uid' && caller.admin) || ownerOf(caller) === owner
}
