import { close } from '../../native/shm.js'

/** Live segments that keep the fd their pool entry came with; a small share of the fd budget, like the pool's. */
const MAX_HELD = 64

/**
 * The descriptors of a few live segments, by name: a segment that came out of the pool keeps its fd, so that its
 * release needs no open (an lstat checks the name still holds that inode) and its reuse no close. Whatever is not
 * kept here is opened again by name, as before.
 */
export class HeldFds {
  readonly #fds = new Map<string, number>()

  /** Keeps `fd` for `name`, or closes it when the share is used up. */
  keep (name: string, fd: number): void {
    if (this.#fds.size >= MAX_HELD || this.#fds.has(name)) { close(fd); return }
    this.#fds.set(name, fd)
  }

  /** The fd kept for `name`, now the caller's to close; undefined when none is. */
  take (name: string): number | undefined {
    const fd = this.#fds.get(name)
    if (fd !== undefined) this.#fds.delete(name)
    return fd
  }

  /** Closes the fd kept for `name`, if any (its record is gone another way). */
  drop (name: string): void {
    const fd = this.take(name)
    if (fd !== undefined) close(fd)
  }

  closeAll (): void {
    for (const fd of this.#fds.values()) close(fd)
    this.#fds.clear()
  }
}
