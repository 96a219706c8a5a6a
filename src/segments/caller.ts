/**
 * Who is asking. Anonymous callers (no API keys configured) share one view; a key sees only what it created; the
 * operator view (the sweeper, shutdown, metrics) sees everything and is never given to a request.
 */
export type Caller =
  | { kind: 'anonymous' }
  | { kind: 'key', id: string }
  | { kind: 'operator' }

export const ANONYMOUS: Caller = Object.freeze({ kind: 'anonymous' })
export const OPERATOR: Caller = Object.freeze({ kind: 'operator' })
export const keyCaller = (id: string): Caller => ({ kind: 'key', id })

/** What a record stores as its owner: the key's id, or null for anonymous callers. */
export function ownerOf (caller: Caller): string | null {
  if (caller.kind === 'operator') throw new Error('the operator view owns nothing and creates nothing')
  return caller.kind === 'key' ? caller.id : null
}

export function sees (caller: Caller, owner: string | null): boolean {
  return caller.kind === 'operator' || ownerOf(caller) === owner
}
