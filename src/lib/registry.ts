import type { Dtype } from './dtype.js'
import { namespaceCovers } from './namespace.js'

export interface SegmentRecord {
  name: string
  namespace: string
  key: string
  /** Position in a list of tensors under one key; null for a single tensor. */
  index: number | null
  shape: number[]
  dtype: Dtype
  nbytes: number
  /** File size: nbytes, but at least 1 since an empty file cannot be mapped. */
  size: number
  ino: bigint
  dev: bigint
  createdAt: number
  /** Lease length in seconds, used again on renewal; 0 never expires. */
  ttl: number
  /** Epoch ms after which the lease has run out; null never expires. */
  expiresAt: number | null
  /** Who registered it: an API key's id, or null without authentication. */
  owner: string | null
}

/** The segments this instance created, indexed by name and by namespace/key. Holds no policy. */
export class Registry {
  readonly #byName = new Map<string, SegmentRecord>()
  readonly #byNamespace = new Map<string, Map<string, SegmentRecord[]>>()
  #bytes = 0

  get count (): number { return this.#byName.size }
  get bytes (): number { return this.#bytes }

  get (name: string): SegmentRecord | undefined {
    return this.#byName.get(name)
  }

  hasKey (namespace: string, key: string): boolean {
    return this.#byNamespace.get(namespace)?.has(key) ?? false
  }

  countIn (namespace: string): number {
    let n = 0
    for (const list of this.#byNamespace.get(namespace)?.values() ?? []) n += list.length
    return n
  }

  add (record: SegmentRecord): void {
    if (this.#byName.has(record.name)) throw new Error(`registry already holds ${record.name}`)
    this.#byName.set(record.name, record)
    let keys = this.#byNamespace.get(record.namespace)
    if (keys === undefined) this.#byNamespace.set(record.namespace, keys = new Map())
    const list = keys.get(record.key) ?? []
    list.push(record)
    list.sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
    keys.set(record.key, list)
    this.#bytes += record.size
  }

  /** Forgets a record (the file is the caller's business); returns it, or undefined if unknown. */
  delete (name: string): SegmentRecord | undefined {
    const record = this.#byName.get(name)
    if (record === undefined) return undefined
    this.#byName.delete(name)
    this.#bytes -= record.size
    const keys = this.#byNamespace.get(record.namespace)
    const list = keys?.get(record.key)?.filter((r) => r !== record)
    if (keys !== undefined && list !== undefined && list.length > 0) keys.set(record.key, list)
    else keys?.delete(record.key)
    if (keys?.size === 0) this.#byNamespace.delete(record.namespace)
    return record
  }

  /** Records in `prefix` and its sub-namespaces (on `/` boundaries), or all of them without a prefix. */
  * covered (prefix?: string): IterableIterator<SegmentRecord> {
    for (const [namespace, keys] of this.#byNamespace) {
      if (prefix !== undefined && !namespaceCovers(prefix, namespace)) continue
      for (const list of keys.values()) yield * list
    }
  }

  values (): IterableIterator<SegmentRecord> {
    return this.#byName.values()
  }
}
