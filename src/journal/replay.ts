import { namespaceCovers } from '../segments/namespace.js'
import { expiry } from '../segments/lease.js'
import type { SegmentRecord } from '../segments/registry.js'
import { isOp, loadLimbo, loadRecord, ownedBy } from './format.js'
import type { Identity } from '../../native/shm.js'

export interface Replayed {
  records: SegmentRecord[]
  /** Files that are ours but no live segment, by name: with the inode recorded, or null when it was not known yet. */
  limbo: Map<string, Identity | null>
  owners: Map<string, string>
  /** Lines and records that did not check out, skipped. */
  skipped: number
}

interface Renewal { seq: number, owner: string | null, ttl: number | null, at: number }

/**
 * Applies journal lines in order. Renewals are logged once per namespace, not once per segment, so they are
 * applied at the end: each record takes the last renewal after its creation that covers its namespace.
 */
export class Replay {
  readonly #live = new Map<string, { record: SegmentRecord, seq: number }>()
  readonly #limbo = new Map<string, Identity | null>()
  readonly #owners = new Map<string, string>()
  readonly #renewals = new Map<string, Renewal[]>()
  #seq = 0
  skipped = 0

  constructor (private readonly prefix: string) {}

  line (text: string): void {
    const seq = ++this.#seq
    let op: unknown
    try {
      op = JSON.parse(text)
    } catch {
      this.skipped++ // a line cut short by SIGKILL mid-write
      return
    }
    if (!isOp(op, this.prefix)) { this.skipped++; return }
    switch (op.op) {
      case 'intent':
        for (const name of op.names) this.#limbo.set(name, null)
        break
      case 'create':
        for (const s of op.records) {
          const record = loadRecord(s, this.prefix)
          if (record === undefined) { this.skipped++; continue }
          this.#live.set(record.name, { record, seq })
          this.#limbo.delete(record.name)
        }
        break
      case 'release':
        for (const name of op.names) {
          const live = this.#live.get(name)
          if (live === undefined) continue
          this.#live.delete(name)
          const id = ownedBy(live.record)
          this.#limbo.set(name, id)
          const to = op.moves?.[name]
          if (to !== undefined) this.#limbo.set(to, id)
        }
        break
      case 'move':
        this.#limbo.set(op.to, this.#limbo.get(op.from) ?? null)
        break
      case 'forget':
        for (const name of op.names) this.#live.delete(name)
        break
      case 'limbo':
        for (const raw of op.entries) {
          const e = loadLimbo(raw, this.prefix)
          if (e === undefined) { this.skipped++; continue }
          const id = e.ino === undefined || e.dev === undefined ? null : { ino: BigInt(e.ino), dev: BigInt(e.dev), ...(e.uid === undefined ? {} : { uid: e.uid }) }
          for (const name of e.names) this.#limbo.set(name, id)
        }
        break
      case 'renew': {
        const list = this.#renewals.get(op.namespace) ?? []
        list.push({ seq, owner: op.owner, ttl: op.ttl, at: op.at })
        this.#renewals.set(op.namespace, list)
        break
      }
      case 'own':
        this.#owners.set(op.namespace, op.owner)
        break
      case 'disown':
        this.#owners.delete(op.namespace)
        break
    }
  }

  finish (): Replayed {
    const records = [...this.#live.values()].map(({ record, seq }) => this.#renewed(record, seq))
    return { records, limbo: this.#limbo, owners: this.#owners, skipped: this.skipped }
  }

  #renewed (record: SegmentRecord, created: number): SegmentRecord {
    let last: Renewal | undefined
    let withTtl: Renewal | undefined
    // Every ancestor of the namespace, itself included: `a` covers `a/b`.
    for (const [namespace, list] of this.#ancestors(record.namespace)) {
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i] as Renewal
        if (r.seq <= created) break
        if (r.owner !== record.owner || !namespaceCovers(namespace, record.namespace)) continue
        if (last === undefined || r.seq > last.seq) last = r
        if (r.ttl !== null && (withTtl === undefined || r.seq > withTtl.seq)) withTtl = r
      }
    }
    if (last === undefined) return record
    const ttl = withTtl?.ttl ?? record.ttl
    return { ...record, ttl, expiresAt: expiry(last.at, ttl) }
  }

  * #ancestors (namespace: string): Generator<[string, Renewal[]]> {
    for (let end = namespace.indexOf('/'); ; end = namespace.indexOf('/', end + 1)) {
      const ancestor = end === -1 ? namespace : namespace.slice(0, end)
      const list = this.#renewals.get(ancestor)
      if (list !== undefined) yield [ancestor, list]
      if (end === -1) return
    }
  }
}
