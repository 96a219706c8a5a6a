import { createSegment, inspect, unlinkIfOurs, unlinkQuietly, type CreateOptions, type Created, type Expected } from '../../native/segment-file.js'
import * as shm from '../../native/shm.js'
import type { Journal } from '../journal/journal.js'
import type { FileAccess } from './access.js'
import type { Logger } from './logger.js'
import { pagesOf, type SegmentRecord } from './registry.js'

/** Files at least this large are freed off the event loop (unlink frees tmpfs pages inside the syscall). */
export const ASYNC_UNLINK_BYTES = 16 << 20

/**
 * Every change this service makes to a segment file, each written to the journal before it happens, so that
 * recovery can finish or undo whatever a SIGKILL interrupted. Nothing here touches a file that is not ours: the
 * owner uid and the recorded inode are checked first.
 */
export class SegmentFiles {
  /** Files being unlinked on the thread pool, and the pages they still hold. */
  readonly #unlinking = new Map<string, { done: Promise<void>, pages: number }>()
  #unlinkingPages = 0
  /** Files that could not even be looked at (no descriptor free): tried again every sweep, and counted meanwhile. */
  readonly #deferred = new Map<string, { identity: shm.Identity, size: number }>()
  #deferredPages = 0

  constructor (private readonly journal: Journal, readonly newName: () => string, private readonly uid: number,
    private readonly options: Omit<CreateOptions, 'size'>, private readonly pageSize: number, private readonly log: Logger) {}

  /** A file is ours if it is the inode we made and belongs to whom we gave it (a local caller), or else to us. */
  expected (identity?: shm.Identity & { file?: FileAccess | undefined }): Expected {
    return { uid: identity?.file?.uid ?? identity?.uid ?? this.uid, identity }
  }

  /** Before any of `names` exists. */
  intend (names: string[]): void {
    this.journal.intend(names)
  }

  /** Live segments, before the client hears of them (and before a kept file takes its new name). */
  created (records: SegmentRecord[]): Promise<void> {
    return this.journal.created(records)
  }

  /** Records that will not be: their files are gone (not critical, recovery would find them missing). */
  forgot (names: string[]): void {
    this.journal.forgot(names)
  }

  /** Files in limbo that are gone for good (unlinked, or taken into a live segment). */
  settled (names: string[]): void {
    this.journal.settled(...names)
  }

  /**
   * A fresh segment under a name already intended; given to a local caller with `access`, else the instance's.
   * With `keepOpen`, its fd comes back open (see HeldFds). A promise only when its pages are reserved off the loop.
   */
  create (name: string, size: number, { access, keepOpen = false }: { access?: FileAccess | undefined, keepOpen?: boolean } = {}): Created | Promise<Created> {
    const { mode, owner, reserve } = this.options
    // Spelled out, not spread: a literal of one shape per tensor.
    if (access === undefined) return createSegment(name, { size, mode, owner, reserve, keepOpen })
    const made = createSegment(name, { size, mode: access.mode, owner: { uid: access.uid, gid: access.gid }, reserve, keepOpen })
    const given = (m: Created): Created => ({ ...m, uid: access.uid })
    return made instanceof Promise ? made.then(given) : given(made)
  }

  /** Renames a file we checked is ours; the journal already knows both names. */
  rename (from: string, to: string): void {
    shm.rename(from, to)
  }

  /**
   * The same, for a file that was checked to be `identity` and is renamed later: whether `to` now holds it. The owner
   * of a file the service does not own can swap its name for another object of its own between the check and the
   * rename (no system call renames a name only if it still holds an inode); that object goes back under `from`. The
   * service's own files need no second look: in the sticky /dev/shm only it (or root) can rename them.
   */
  moveChecked (from: string, to: string, identity: shm.Identity & { file?: FileAccess | undefined }): boolean {
    shm.rename(from, to)
    const { uid } = this.expected(identity)
    if (uid === process.geteuid?.()) return true
    const st = shm.statName(to)
    if (st !== undefined && st.regular && st.uid === uid && st.ino === identity.ino && st.dev === identity.dev) return true
    this.log.warn({ segment: from }, 'another object of the file\'s owner took its name before it was moved; it was put back, and the file is not used')
    try {
      shm.rename(to, from)
    } catch (err) {
      this.log.warn({ err, segment: from }, 'could not put back what took a segment file\'s name')
    }
    return false
  }

  /**
   * Unlinks a file in limbo if it is still ours. A large one is first renamed (journaled), so that its name goes
   * at once, and then unlinked on the thread pool; `doomed` is that name when the journal has it already.
   */
  discard (name: string, identity: shm.Identity, size: number, doomed?: string): void {
    this.#undefer(name)
    const expected = this.expected(identity)
    if (doomed === undefined && size >= ASYNC_UNLINK_BYTES) {
      doomed = this.newName()
      try {
        this.journal.moved(name, doomed)
      } catch (err) {
        this.log.warn({ err }, 'the journal cannot record a move; unlinking on the event loop')
        doomed = undefined
      }
    }
    try {
      if (doomed === undefined) {
        unlinkIfOurs(name, expected)
        this.journal.settled(name)
        return
      }
      if (inspect(name, expected).kind !== 'ours') { this.journal.settled(name, doomed); return }
      shm.rename(name, doomed)
      this.journal.settled(name)
      this.#unlinkLater(doomed, pagesOf(size, this.pageSize))
    } catch (err) {
      this.log.warn({ err, segment: name }, 'could not unlink a released segment; trying again at the next sweep')
      this.defer(name, identity, size)
    }
  }

  /** A file in limbo that cannot be looked at now (EMFILE, say): it stays in limbo and counted until a sweep unlinks it. */
  defer (name: string, identity: shm.Identity, size: number): void {
    if (this.#deferred.has(name)) return
    this.#deferred.set(name, { identity, size })
    this.#deferredPages += pagesOf(size, this.pageSize)
  }

  /** Tries the deferred files again. */
  retryDeferred (): void {
    for (const [name, { identity, size }] of [...this.#deferred]) this.discard(name, identity, size)
  }

  #undefer (name: string): void {
    const d = this.#deferred.get(name)
    if (d === undefined) return
    this.#deferred.delete(name)
    this.#deferredPages -= pagesOf(d.size, this.pageSize)
  }

  #unlinkLater (name: string, pages: number): void {
    this.#unlinkingPages += pages
    const done = shm.unlinkAsync(name)
      .catch((err: unknown) => { this.log.warn({ err, segment: name }, 'could not unlink a released segment') })
      .finally(() => {
        this.#unlinking.delete(name)
        this.#unlinkingPages -= pages
        this.journal.settled(name)
      })
    this.#unlinking.set(name, { done, pages })
  }

  /** Pages that released files still hold: being unlinked, or waiting for a descriptor to be checked with. */
  get unlinkingPages (): number { return this.#unlinkingPages + this.#deferredPages }

  async drain (): Promise<void> {
    await Promise.all([...this.#unlinking.values()].map(async (u) => await u.done))
  }

  /** For a process about to exit: whatever is still being unlinked goes now, on this thread. */
  drainNow (): void {
    for (const name of [...this.#unlinking.keys()]) this.dropNow(name)
  }

  /** Unlinks a name without checking (a spare this process is making): only for an exit that cannot wait. */
  dropNow (name: string): void {
    unlinkQuietly(name)
    this.journal.settled(name)
  }
}
