import type { FastifyBaseLogger } from 'fastify'
import { list } from '../../native/shm.js'
import type { SegmentRecord } from './registry.js'
import type { SegmentService } from './segments.js'

export interface Orphan { name: string, size: number }

/** Leaks, as one look at /dev/shm and the registry sees them. */
export interface LeakScan {
  /** Past their lease, not yet reclaimed. */
  expired: SegmentRecord[]
  /** Registered, but the file is gone (or is another file now). */
  vanished: SegmentRecord[]
  /** Files with our prefix that this instance's registry does not know; never deleted: they may be another's. */
  orphans: Orphan[]
}

export function scan (service: SegmentService, prefix: string, now = Date.now()): LeakScan {
  const files = new Map(list(prefix).map((f) => [f.name, f]))
  for (const name of service.pool.names()) files.delete(name)
  for (const name of service.reaper.names()) files.delete(name)
  const expired: SegmentRecord[] = []
  const vanished: SegmentRecord[] = []
  for (const r of service.registry.values()) {
    const f = files.get(r.name)
    files.delete(r.name)
    if (f === undefined || f.ino !== r.ino || f.dev !== r.dev) vanished.push(r)
    else if (r.expiresAt !== null && r.expiresAt <= now) expired.push(r)
  }
  return { expired, vanished, orphans: [...files.values()].map(({ name, size }) => ({ name, size })) }
}

/** Reclaims expired segments and drops vanished ones, every TENSORSHM_SWEEP_INTERVAL. */
export class Sweeper {
  #timer: NodeJS.Timeout | undefined

  constructor (private readonly service: SegmentService, private readonly prefix: string, private readonly log: FastifyBaseLogger) {}

  start (intervalMs: number): void {
    this.#timer = setInterval(() => {
      try {
        this.sweep()
      } catch (err) {
        this.log.error({ err }, 'sweep failed')
      }
    }, intervalMs)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  sweep (now = Date.now()): { reclaimed: number, dropped: number } {
    this.service.pool.trim(now)
    const { expired, vanished } = scan(this.service, this.prefix, now)
    this.service.forget(vanished, 'vanished')
    for (const r of expired) {
      this.log.warn({ segment: r.name, namespace: r.namespace, key: r.key, bytes: r.size, expiredAt: new Date(r.expiresAt ?? now).toISOString() }, 'lease expired: segment reclaimed')
      this.service.release(r.name, 'expired')
    }
    return { reclaimed: expired.length, dropped: vanished.length }
  }
}
