import { errors } from './errors.js'
import type { Journal } from './journal.js'
import { namespaceRoot } from './namespace.js'

/**
 * Namespace roots (`<client_id>` of `<client_id>/<object_id>`) and the API key that first used each. Owning the
 * root means owning every namespace under it, so that a release by prefix can never reach another key's segments.
 */
export class Owners {
  readonly map = new Map<string, string>()

  constructor (private readonly journal?: Journal) {}

  /** 403 when another key owns the root. Under local trust (owner null) nobody owns anything. */
  check (namespace: string, owner: string | null): void {
    if (owner === null) return
    const root = namespaceRoot(namespace)
    const holder = this.map.get(root)
    if (holder !== undefined && holder !== owner) throw new errors.NamespaceForbidden(`namespace: "${root}" belongs to another API key`)
  }

  /** The first key to create segments under a root keeps it for good; a refused request claims nothing. */
  claim (namespace: string, owner: string | null): void {
    this.check(namespace, owner)
    if (owner === null || this.map.has(namespaceRoot(namespace))) return
    this.map.set(namespaceRoot(namespace), owner)
    this.journal?.owned(namespaceRoot(namespace), owner)
  }
}
