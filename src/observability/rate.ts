/**
 * Namespaces counted per bucket, at most. A client that allocates under a new namespace every time (what the warning
 * is for) made one map entry per request: thousands per second kept alive for the window, slow scavenges, and a
 * 100 ms mark-compact under benchmark 1. The busiest namespaces still stand out.
 */
const TRACKED = 16

/** Events per second over a sliding window, in fixed buckets, with per-namespace counts for the warning. */
export class RateMeter {
  readonly #bucketMs: number
  readonly #counts: number[]
  readonly #names: Array<Map<string, number>>
  #head = 0
  #headStart: number
  /** The sum of #counts, kept as they change: rate() is asked on every create. */
  #total = 0

  constructor (readonly windowMs: number, buckets = 20, now = Date.now()) {
    this.#bucketMs = windowMs / buckets
    this.#counts = new Array<number>(buckets).fill(0)
    this.#names = Array.from({ length: buckets }, () => new Map())
    this.#headStart = now
  }

  add (n: number, namespace: string, now = Date.now()): void {
    this.#advance(now)
    this.#counts[this.#head] = (this.#counts[this.#head] ?? 0) + n
    this.#total += n
    const names = this.#names[this.#head]
    if (names === undefined) return
    const count = names.get(namespace)
    if (count !== undefined || names.size < TRACKED) { names.set(namespace, (count ?? 0) + n); return }
    // Space-Saving: the least counted namespace makes room, and the newcomer inherits its count (an upper bound).
    let least: string | undefined
    let fewest = Infinity
    for (const [k, v] of names) if (v < fewest) { least = k; fewest = v }
    if (least !== undefined) names.delete(least)
    names.set(namespace, fewest + n)
  }

  /** Events per second over the whole window. */
  rate (now = Date.now()): number {
    this.#advance(now)
    return this.#total / (this.windowMs / 1000)
  }

  /** The namespaces that allocated most in the window, busiest first. */
  top (n: number, now = Date.now()): Array<[string, number]> {
    this.#advance(now)
    const sum = new Map<string, number>()
    for (const names of this.#names) for (const [k, v] of names) sum.set(k, (sum.get(k) ?? 0) + v)
    return [...sum].sort((a, b) => b[1] - a[1]).slice(0, n)
  }

  #advance (now: number): void {
    const steps = Math.floor((now - this.#headStart) / this.#bucketMs)
    if (steps <= 0) return
    for (let i = 0; i < Math.min(steps, this.#counts.length); i++) {
      this.#head = (this.#head + 1) % this.#counts.length
      this.#total -= this.#counts[this.#head] ?? 0
      this.#counts[this.#head] = 0
      this.#names[this.#head]?.clear()
    }
    this.#headStart += steps * this.#bucketMs
  }
}
