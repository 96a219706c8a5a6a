/** Events per second over a sliding window, in fixed buckets, with per-namespace counts for the warning. */
export class RateMeter {
  readonly #bucketMs: number
  readonly #counts: number[]
  readonly #names: Array<Map<string, number>>
  #head = 0
  #headStart: number

  constructor (readonly windowMs: number, buckets = 20, now = Date.now()) {
    this.#bucketMs = windowMs / buckets
    this.#counts = new Array<number>(buckets).fill(0)
    this.#names = Array.from({ length: buckets }, () => new Map())
    this.#headStart = now
  }

  add (n: number, namespace: string, now = Date.now()): void {
    this.#advance(now)
    this.#counts[this.#head] = (this.#counts[this.#head] ?? 0) + n
    const names = this.#names[this.#head]
    names?.set(namespace, (names.get(namespace) ?? 0) + n)
  }

  /** Events per second over the whole window. */
  rate (now = Date.now()): number {
    this.#advance(now)
    return this.#counts.reduce((a, b) => a + b, 0) / (this.windowMs / 1000)
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
      this.#counts[this.#head] = 0
      this.#names[this.#head]?.clear()
    }
    this.#headStart += steps * this.#bucketMs
  }
}
