import { scanDir, type Listing } from '../../native/scan.js'
import { SHM_DIR } from '../../native/shm.js'
import { OPERATOR } from './caller.js'
import type { Logger } from './logger.js'
import type { SegmentRecord } from './registry.js'
import type { SegmentService } from './service.js'

export interface Leak { segments: number, bytes: number }

/** Leaks as the last complete scan of /dev/shm found them; `expired` is read from the registry when asked. */
export interface LeakFigures { vanished: Leak, orphan: Leak, scannedAt: number | null }

/** A scan never runs longer than this, nor lists more files with our prefix. */
const SCAN_TIMEOUT_MS = 30_000
const SCAN_MAX_ENTRIES = 1_000_000

const none = (): Leak => ({ segments: 0, bytes: 0 })

/**
 * Every TENSORSHM_SWEEP_INTERVAL: reclaims expired segments, drops vanished ones, unlinks idle kept segments,
 * and counts files with our prefix that nobody knows (orphans, never deleted: they may be another's). The scan
 * of /dev/shm runs on a worker thread; scrapes only read what the last one found.
 */
export class Sweeper {
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #leaks: LeakFigures = { vanished: none(), orphan: none(), scannedAt: null }

  constructor (private readonly service: SegmentService, private readonly prefix: string, private readonly log: Logger) {}

  get leaks (): LeakFigures { return this.#leaks }

  start (intervalMs: number): void {
    const tick = () => {
      this.sweep().catch((err: unknown) => { this.log.error({ err }, 'sweep failed') })
        .finally(() => { if (this.#timer !== undefined) this.#timer = setTimeout(tick, intervalMs).unref() })
    }
    this.#timer = setTimeout(tick, 0).unref()
  }

  stop (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** One sweep; a sweep already under way is joined, not doubled. */
  async sweep (now = Date.now()): Promise<{ reclaimed: number, dropped: number }> {
    this.#running ??= this.#scan().finally(() => { this.#running = undefined })
    await this.#running
    this.service.tidy(now)
    const expired = this.service.expired(now)
    for (const r of expired) {
      this.log.warn({ segment: r.name, namespace: r.namespace, key: r.key, bytes: r.size, expiredAt: new Date(r.expiresAt ?? now).toISOString() }, 'lease expired: segment reclaimed')
    }
    if (expired.length > 0) this.service.releaseExpired(expired, now)
    return { reclaimed: expired.length, dropped: this.#leaks.vanished.segments }
  }

  async #scan (): Promise<void> {
    const started = Date.now()
    const departed = this.service.watchSettled()
    let listing: Listing
    try {
      listing = await scanDir(SHM_DIR, this.prefix, { maxEntries: SCAN_MAX_ENTRIES, timeoutMs: SCAN_TIMEOUT_MS })
    } finally {
      departed.stop()
    }
    if (!listing.complete) {
      this.log.warn({ files: listing.names.length }, 'the scan of /dev/shm did not finish; leak figures are from an earlier one')
      return
    }
    const listed = new Map<string, number>()
    listing.names.forEach((name, i) => listed.set(name, i))
    const orphan = none()
    for (const [name, i] of listed) {
      if (this.service.knows(name) || departed.names.has(name)) continue
      orphan.segments++
      orphan.bytes += listing.allocated[i] ?? 0
    }
    // Only what existed before the scan began can be missing from it; each is looked at once more before it goes.
    const vanished: SegmentRecord[] = []
    for (const r of this.service.list(undefined, OPERATOR)) {
      if (r.createdAt >= started) continue
      const i = listed.get(r.name)
      if (i !== undefined && listing.ino[i] === r.ino && listing.dev[i] === r.dev) continue
      if (this.service.presence(r) !== 'present') vanished.push(r)
    }
    this.service.forget(vanished, 'vanished')
    this.#leaks = { vanished: { segments: vanished.length, bytes: vanished.reduce((n, r) => n + r.size, 0) }, orphan, scannedAt: Date.now() }
  }
}
