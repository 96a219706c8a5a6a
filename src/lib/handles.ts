import { isSysError } from '../../native/errors.js'
import { close, openVerified } from '../../native/shm.js'
import { errors } from './errors.js'
import type { SegmentRecord } from './registry.js'

/** An open segment: its own fd, so a release (unlink) while it is read cannot take the data away. */
export interface Handle {
  record: SegmentRecord
  fd: number
  close: () => void
}

/** The segments open for I/O right now, counted per name: a segment in use is never recycled. */
export class Handles {
  readonly #open = new Map<string, number>()

  /**
   * Opens a registered segment, checking that the file is still ours and still long enough. A vanished (or
   * replaced) file is 410 after `vanished` has run; a truncated one is 409.
   */
  open (record: SegmentRecord, writable: boolean, vanished: () => void): Handle {
    let opened
    try {
      opened = openVerified(record.name, record, writable)
    } catch (err) {
      if (!isSysError(err, 'ENOENT')) throw err
      vanished()
      throw new errors.SegmentGone(`name: segment "${record.name}" was unlinked or replaced on /dev/shm`)
    }
    const { fd, stat } = opened
    if (stat.size < record.nbytes) {
      close(fd)
      throw new errors.SegmentTruncated(`name: segment "${record.name}" holds ${stat.size} of its ${record.nbytes} bytes; someone truncated it`)
    }
    this.#open.set(record.name, (this.#open.get(record.name) ?? 0) + 1)
    let isOpen = true
    const done = () => {
      if (!isOpen) return
      isOpen = false
      close(fd)
      const n = (this.#open.get(record.name) ?? 1) - 1
      if (n === 0) this.#open.delete(record.name)
      else this.#open.set(record.name, n)
    }
    return { record, fd, close: done }
  }

  busy (name: string): boolean {
    return this.#open.has(name)
  }
}
