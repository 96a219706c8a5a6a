import { errors } from '../errors.js'
import { namespaceRoot } from './namespace.js'

interface Claim { owner: string, pending: number, journaled: boolean }

export interface OwnersJournal {
  owned: (root: string, owner: string) => void
  disowned: (root: string) => void
}

/**
 * Namespace roots (`<client_id>` of `<client_id>/<object_id>`) and the API key or local user that holds each.
 * Holding the root means holding every namespace under it, so a release by prefix never reaches another owner's
 * segments. A claim lasts while its owner has segments under the root or a create in flight, so the map is as
 * large as the live state and nobody can squat a client id its owner no longer uses. Anonymous callers (owner
 * null) claim nothing.
 */
export class Owners {
  readonly #claims = new Map<string, Claim>()

  /** `holdsRoot`: whether that owner has segments under the root (another's there do not keep a claim alive). */
  constructor (private readonly journal: OwnersJournal, private readonly holdsRoot: (root: string, owner: string) => boolean) {}

  /** Loads claims from the journal; only roots where their owner still has segments keep theirs. */
  restore (claims: Map<string, string>): void {
    for (const [root, owner] of claims) if (this.holdsRoot(root, owner)) this.#claims.set(root, { owner, pending: 0, journaled: true })
  }

  /**
   * 403 when another key or user holds the root; otherwise the root is held for this create until it ends. An
   * anonymous caller (TCP without keys, beside a socket's users) claims nothing, and gets no room in a held root.
   */
  acquire (namespace: string, owner: string | null): void {
    const root = namespaceRoot(namespace)
    const claim = this.#claims.get(root)
    if (owner === null) {
      if (claim !== undefined) throw new errors.NamespaceForbidden(`namespace: "${root}" belongs to another caller`)
      return
    }
    if (claim !== undefined && claim.owner !== owner) throw new errors.NamespaceForbidden(`namespace: "${root}" belongs to ${owner.startsWith('uid:') ? 'another user' : 'another API key'}`)
    if (claim === undefined) this.#claims.set(root, { owner, pending: 1, journaled: false })
    else claim.pending++
  }

  /** The create that acquired the root has ended, with segments or without. */
  settle (namespace: string, owner: string | null): void {
    if (owner === null) return
    const root = namespaceRoot(namespace)
    const claim = this.#claims.get(root)
    if (claim === undefined) return
    claim.pending--
    if (this.holdsRoot(root, claim.owner) && !claim.journaled) {
      claim.journaled = true
      this.journal.owned(root, owner)
    }
    this.released(root)
  }

  /** Ends the claim once the root holds nothing and nothing is being created in it. */
  released (root: string): void {
    const claim = this.#claims.get(root)
    if (claim === undefined || claim.pending > 0 || this.holdsRoot(root, claim.owner)) return
    this.#claims.delete(root)
    if (claim.journaled) this.journal.disowned(root)
  }

  /** The held claims, for a journal snapshot. */
  snapshot (): Map<string, string> {
    const out = new Map<string, string>()
    for (const [root, c] of this.#claims) if (c.journaled) out.set(root, c.owner)
    return out
  }

  get size (): number { return this.#claims.size }
}
