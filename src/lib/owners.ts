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

  /** Under local trust (owner null) nobody owns anything; otherwise the first key keeps the root for good. */
  claim (namespace: string, owner: string | null): void {
    if (owner === null) return
    const root = namespaceRoot(namespace)
    const holder = this.map.get(root)
    if (holder === owner) return
    if (holder !== undefined) throw new errors.NamespaceForbidden(`namespace: "${root}" belongs to another API key`)
    this.map.set(root, owner)
    this.journal?.owned(root, owner)
  }
}
