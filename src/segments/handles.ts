import { close } from '../../native/shm.js'
import { probe, type Expected } from '../../native/segment-file.js'
import { errors } from '../errors.js'
import type { SegmentRecord } from './registry.js'

/** An open segment: its own fd, so a release (unlink) while it is read cannot take the data away. */
export interface Handle {
  record: SegmentRecord
  fd: number
  close: () => void
}

interface Open { count: number, heldPages: number }

/**
 * The segments open for I/O right now, counted per name: a segment in use is never recycled, and one released
 * while open keeps counting against the quota until its last fd closes, since its pages are still there.
 * At most `max` fds are open at once: past that, 503 and retry, never EMFILE in the middle of something else.
 */
export class Handles {
  readonly #open = new Map<string, Open>()
  #fds = 0
  #heldPages = 0

  constructor (private readonly max: number) {}

  get fds (): number { return this.#fds }
  /** Pages of released segments that an open fd still pins. */
  get heldPages (): number { return this.#heldPages }

  /**
   * Opens a registered segment, checking that the file is still ours (never following a link or waiting on a
   * FIFO) and still long enough. A file that is gone or is not ours is 410 after `gone` has run; a truncated one 409.
   */
  open (record: SegmentRecord, writable: boolean, expected: Expected, gone: () => void): Handle {
    if (this.#fds >= this.max) throw new errors.Busy(`name: ${this.#fds} segment files are open for transfers, the most this service keeps open at once (TENSORSHM_MAX_OPEN_SEGMENTS); retry shortly`)
    const found = probe(record.name, expected, writable)
    if (found.kind !== 'ours') {
      gone()
      throw new errors.SegmentGone(`name: segment "${record.name}" was unlinked or replaced on /dev/shm`)
    }
    const { fd, stat } = found
    if (stat.size < record.nbytes) {
      close(fd)
      throw new errors.SegmentTruncated(`name: segment "${record.name}" holds ${stat.size} of its ${record.nbytes} bytes; someone truncated it`)
    }
    const entry = this.#open.get(record.name) ?? { count: 0, heldPages: 0 }
    entry.count++
    this.#open.set(record.name, entry)
    this.#fds++
    let isOpen = true
    const done = () => {
      if (!isOpen) return
      isOpen = false
      close(fd)
      this.#fds--
      if (--entry.count > 0) return
      this.#open.delete(record.name)
      this.#heldPages -= entry.heldPages
    }
    return { record, fd, close: done }
  }

  busy (name: string): boolean {
    return this.#open.has(name)
  }

  /** `name` was released while open: its pages stay counted until the last fd closes. */
  hold (name: string, pages: number): void {
    const entry = this.#open.get(name)
    if (entry === undefined || entry.heldPages > 0) return
    entry.heldPages = pages
    this.#heldPages += pages
  }
}
