import { probe, unlinkQuietly } from '../../native/segment-file.js'
import { close, statName, type Stat } from '../../native/shm.js'
import type { Journal } from '../journal/journal.js'
import { ASYNC_UNLINK_BYTES, type SegmentFiles } from './files.js'
import type { Handles } from './handles.js'
import type { HeldFds } from './held.js'
import type { Logger } from './logger.js'
import { SegmentPool } from './pool.js'
import { pagesOf, type SegmentRegistry, type SegmentRecord } from './registry.js'

/** Released files that go to the pool with their open fd, per release (the rest are opened again to be zeroed). */
const FDS_PER_RELEASE = 64

type Action = 'none' | 'pool' | 'reap' | 'unlink' | 'later'
interface Step { r: SegmentRecord, action: Action, fd?: number | undefined }

/** What a release will do to each file, decided before the journal hears of it. */
export interface ReleasePlan { steps: Step[], moves: Map<string, string> }

/**
 * The steps of a release, in the order the journal needs them: look at each file (is it still ours, is it worth
 * keeping), take the records out of the registry, then, once the journal has the plan, move or unlink the files.
 */
export class Releaser {
  constructor (private readonly registry: SegmentRegistry, private readonly files: SegmentFiles, private readonly pool: SegmentPool,
    private readonly handles: Handles, private readonly journal: Journal, private readonly newName: () => string,
    private readonly pageSize: number, private readonly held: HeldFds, private readonly log: Logger) {}

  /** Each file (if it is still ours) is kept for reuse, unlinked off the event loop when large, or unlinked at once. */
  plan (records: SegmentRecord[], shutdown: boolean): ReleasePlan {
    const moves = new Map<string, string>()
    // A namespace of thousands goes to the pool by name; only a few files come with their fd (see the pool).
    let fds = 0
    const steps = records.map((r): Step => {
      try {
        // Opened read-write (or held since it left the pool): a file kept for reuse is zeroed through this fd.
        const found = this.#look(r)
        if (found.kind !== 'ours') return { r, action: 'none' }
        // A segment still being read keeps its pages through the reader's fd; it is never recycled under it. A
        // local caller's file is its own, and it could keep it open past the release: never recycled either.
        const keep = !shutdown && r.file === undefined && !this.handles.busy(r.name) && this.pool.wants(r.size, found.stat)
        const withFd = keep && fds < FDS_PER_RELEASE
        if (withFd) fds++
        else close(found.fd)
        const action: Action = keep ? 'pool' : r.size >= ASYNC_UNLINK_BYTES ? 'reap' : 'unlink'
        if (action !== 'unlink') moves.set(r.name, this.newName())
        return { r, action, fd: withFd ? found.fd : undefined }
      } catch (err) {
        // Out of descriptors, say: the file stays in limbo, counted, and a sweep unlinks it when it can look at it.
        this.log.warn({ err, segment: r.name }, 'could not look at a released segment; it goes at the next sweep')
        return { r, action: 'later' }
      }
    })
    return { steps, moves }
  }

  /**
   * The file under a record's name, if it is still ours: through the fd held since it left the pool (an lstat of the
   * name must find that same inode, one link, ours), or opened by name.
   */
  #look (r: SegmentRecord): { kind: 'ours', fd: number, stat: Stat } | { kind: 'other' } {
    const held = this.held.take(r.name)
    if (held === undefined) {
      const found = probe(r.name, this.files.expected(r), true)
      return found.kind === 'ours' ? found : { kind: 'other' }
    }
    try {
      const st = statName(r.name)
      if (st !== undefined && st.regular && st.uid === this.files.expected(r).uid && st.ino === r.ino && st.dev === r.dev) return { kind: 'ours', fd: held, stat: st }
    } catch (err) {
      close(held)
      throw err
    }
    close(held)
    return { kind: 'other' }
  }

  /** The records leave the registry: nobody can open them any more; one still open keeps counting its pages. */
  detach ({ steps }: ReleasePlan): void {
    for (const { r } of steps) {
      this.registry.delete(r.name)
      if (this.handles.busy(r.name)) this.handles.hold(r.name, pagesOf(r.size, this.pageSize))
    }
  }

  /** Nothing is moved that the journal does not know of: without it, the files are simply unlinked now. */
  unjournaled (plan: ReleasePlan, err: unknown): void {
    this.log.warn({ err }, 'the journal cannot record a release; unlinking on the event loop')
    plan.moves.clear()
    for (const s of plan.steps) if (s.action !== 'none' && s.action !== 'later') s.action = 'unlink'
  }

  /** Once the journal has the plan. */
  apply ({ steps, moves }: ReleasePlan): void {
    for (const step of steps) {
      const { r, action, fd } = step
      const to = moves.get(r.name)
      try {
        if (action === 'pool' && to !== undefined) {
          // What its owner swapped in goes back under the name, and nothing is kept.
          if (!this.files.moveChecked(r.name, to, r)) { this.journal.settled(r.name, to); continue }
          this.journal.settled(r.name)
          step.fd = undefined
          this.pool.admit({ name: to, ino: r.ino, dev: r.dev, size: r.size, key: SegmentPool.key(r.owner, r.namespace, r.size), fd })
        } else if (action === 'reap' && to !== undefined) {
          this.files.discard(r.name, r, r.size, to)
        } else if (action === 'later') {
          this.files.defer(r.name, r, r.size)
        } else {
          if (action === 'unlink') unlinkQuietly(r.name)
          this.journal.settled(r.name)
        }
      } catch (err) {
        this.log.warn({ err, segment: r.name }, 'could not unlink a released segment')
      } finally {
        if (step.fd !== undefined) close(step.fd)
      }
    }
  }
}
