import type { Dtype } from '../codecs/dtype.js'
import type { FileAccess } from './access.js'
import type { ProcessRef } from './exit-watch.js'
import { namespaceCovers, namespaceRoot } from './namespace.js'

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
  /** Who registered it: an API key's id, `uid:<n>` for a local caller, or null without authentication. */
  owner: string | null
  /** The file's owner and mode when it was given to a local caller; absent when the service's own. */
  file?: FileAccess
  /** release_on_exit: the process whose exit releases the namespace. */
  boundTo?: ProcessRef
}

/** Bytes a file of `size` occupies on tmpfs: whole pages, one at least (what quotas count, not st_size). */
export const pagesOf = (size: number, pageSize: number): number => Math.max(1, Math.ceil(size / pageSize)) * pageSize

const rootKey = (root: string, owner: string | null): string => `${owner ?? ''}\0${root}`

/** The segments this instance created, indexed by name, by namespace/key and by namespace root. Holds no policy. */
export class SegmentRegistry {
  readonly #byName = new Map<string, SegmentRecord>()
  readonly #byNamespace = new Map<string, Map<string, SegmentRecord[]>>()
  readonly #perRoot = new Map<string, number>()
  /** The last namespace and owner looked up, and their root key: a create or release of many tensors asks once. */
  #last = { namespace: '', owner: null as string | null, key: '' }
  #bytes = 0
  #pages = 0

  constructor (private readonly pageSize: number) {}

  get count (): number { return this.#byName.size }
  /** File sizes, as clients see them. */
  get bytes (): number { return this.#bytes }
  /** Pages held, as /dev/shm sees them. */
  get pages (): number { return this.#pages }

  get (name: string): SegmentRecord | undefined {
    return this.#byName.get(name)
  }

  has (name: string): boolean {
    return this.#byName.has(name)
  }

  hasKey (namespace: string, key: string): boolean {
    return this.#byNamespace.get(namespace)?.has(key) ?? false
  }

  countIn (namespace: string): number {
    let n = 0
    for (const list of this.#byNamespace.get(namespace)?.values() ?? []) n += list.length
    return n
  }

  /** Whether `owner` has a segment under this namespace root. */
  holdsRoot (root: string, owner: string | null): boolean {
    return this.#perRoot.has(rootKey(root, owner))
  }

  add (record: SegmentRecord): void {
    if (this.#byName.has(record.name)) throw new Error(`registry already holds ${record.name}`)
    this.#byName.set(record.name, record)
    let keys = this.#byNamespace.get(record.namespace)
    if (keys === undefined) this.#byNamespace.set(record.namespace, keys = new Map())
    const list = keys.get(record.key)
    if (list === undefined) keys.set(record.key, [record])
    else {
      list.push(record)
      list.sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
    }
    const root = this.#rootKeyOf(record)
    this.#perRoot.set(root, (this.#perRoot.get(root) ?? 0) + 1)
    this.#bytes += record.size
    this.#pages += pagesOf(record.size, this.pageSize)
  }

  /** Forgets a record (the file is the caller's business); returns it, or undefined if unknown. */
  delete (name: string): SegmentRecord | undefined {
    const record = this.#byName.get(name)
    if (record === undefined) return undefined
    this.#byName.delete(name)
    this.#bytes -= record.size
    this.#pages -= pagesOf(record.size, this.pageSize)
    const keys = this.#byNamespace.get(record.namespace)
    const list = keys?.get(record.key)
    const at = list?.indexOf(record) ?? -1
    if (list !== undefined && at >= 0) list.splice(at, 1)
    if (list !== undefined && list.length === 0) keys?.delete(record.key)
    if (keys?.size === 0) this.#byNamespace.delete(record.namespace)
    const root = this.#rootKeyOf(record)
    const left = (this.#perRoot.get(root) ?? 1) - 1
    if (left === 0) this.#perRoot.delete(root)
    else this.#perRoot.set(root, left)
    return record
  }

  #rootKeyOf ({ namespace, owner }: SegmentRecord): string {
    const last = this.#last
    if (last.key === '' || last.namespace !== namespace || last.owner !== owner) this.#last = { namespace, owner, key: rootKey(namespaceRoot(namespace), owner) }
    return this.#last.key
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
