import type { FastifyBaseLogger } from 'fastify'
import { unlinkQuietly } from '../../native/segment.js'
import * as shm from '../../native/shm.js'
import { newSegmentName } from './names.js'

/** Files at least this large are freed off the event loop (unlink frees tmpfs pages inside the syscall). */
export const ASYNC_UNLINK_BYTES = 16 << 20

/**
 * Removes files we own. Small ones go at once; a large one is first renamed (so its name disappears at once, as
 * callers expect) and then unlinked on the thread pool.
 */
export class Reaper {
  readonly #pending = new Map<string, Promise<void>>()

  constructor (private readonly prefix: string, private readonly log: FastifyBaseLogger) {}

  discard (name: string, size: number): void {
    if (size < ASYNC_UNLINK_BYTES) { unlinkQuietly(name); return }
    const doomed = newSegmentName(this.prefix)
    try {
      shm.rename(name, doomed)
    } catch {
      unlinkQuietly(name)
      return
    }
    const done = shm.unlinkAsync(doomed)
      .catch((err: unknown) => { this.log.warn({ err, segment: doomed }, 'could not unlink a released segment') })
      .finally(() => { this.#pending.delete(doomed) })
    this.#pending.set(doomed, done)
  }

  /** Names being unlinked right now: ours, not orphans. */
  names (): IterableIterator<string> {
    return this.#pending.keys()
  }

  async drain (): Promise<void> {
    await Promise.all(this.#pending.values())
  }

  /** For a process about to exit: whatever is still pending is unlinked now, on this thread. */
  drainNow (): void {
    for (const name of [...this.#pending.keys()]) unlinkQuietly(name)
  }
}
