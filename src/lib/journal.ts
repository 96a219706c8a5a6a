import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { isSysError } from '../../native/errors.js'
import { SHM_DIR, lockExclusive } from '../../native/shm.js'
import { parseDtype } from './dtype.js'
import type { PoolEntry } from './pool.js'
import type { SegmentRecord } from './registry.js'

/** A record as the journal keeps it: plain JSON (bigints as strings, the dtype by name). */
interface Stored extends Omit<SegmentRecord, 'dtype' | 'ino' | 'dev'> { dtype: string, ino: string, dev: string }

type Op =
  | { op: 'create', records: Stored[] }
  | { op: 'release', names: string[] }
  | { op: 'lease', leases: Array<[name: string, expiresAt: number | null, ttl: number]> }
  | { op: 'own', namespace: string, owner: string }
  | { op: 'pool', entries: StoredPool[] }
  | { op: 'unpool', names: string[] }

interface StoredPool extends Omit<PoolEntry, 'ino' | 'dev'> { ino: string, dev: string }

export interface Replayed { records: SegmentRecord[], owners: Map<string, string>, pooled: PoolEntry[], skipped: number }

export class StateDirBusy extends Error {}

/** Where instances keep their journals unless told otherwise: on the tmpfs, next to their segments. */
export const DEFAULT_ROOT = `${SHM_DIR}/.tensorshm`

/**
 * flock on `<dir>/lock`. A closing instance may unlink that file after another opened it, so the lock only
 * counts if the path still names the locked inode; otherwise take the new file.
 */
function lock (dir: string): number {
  for (;;) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const path = join(dir, 'lock')
    const fd = openSync(path, 'a', 0o600)
    try {
      lockExclusive(fd)
    } catch (err) {
      closeSync(fd)
      if (isSysError(err, 'EAGAIN')) throw new StateDirBusy(`another tensorshm instance holds ${dir}; give each instance its own TENSORSHM_STATE_DIR`)
      throw err
    }
    if (statSync(path, { throwIfNoEntry: false })?.ino === fstatSync(fd).ino) return fd
    closeSync(fd)
  }
}

const store = (r: SegmentRecord): Stored => ({ ...r, dtype: r.dtype.name, ino: r.ino.toString(), dev: r.dev.toString() })

function load (s: Stored): SegmentRecord | undefined {
  const dtype = parseDtype(s.dtype)
  return dtype === undefined ? undefined : { ...s, dtype, ino: BigInt(s.ino), dev: BigInt(s.dev) }
}

/**
 * An append-only log of what this instance created, released and renewed, kept (by default) on the same tmpfs
 * as the segments: it survives SIGKILL and restarts, and goes when the segments go, at reboot.
 * One instance per directory, enforced with flock.
 */
export class Journal {
  readonly #file: string
  readonly #lockFd: number
  #fd: number
  #lines = 0
  #closed = false

  private constructor (readonly dir: string) {
    this.#lockFd = lock(dir)
    this.#file = join(dir, 'journal.jsonl')
    this.#fd = openSync(this.#file, 'a', 0o600)
  }

  static open (dir: string): Journal {
    return new Journal(dir)
  }

  replay (): Replayed {
    const records = new Map<string, SegmentRecord>()
    const owners = new Map<string, string>()
    const pooled = new Map<string, PoolEntry>()
    let skipped = 0
    const text = existsSync(this.#file) ? readFileSync(this.#file, 'utf8') : ''
    for (const line of text.split('\n')) {
      if (line === '') continue
      let op: Op
      try {
        op = JSON.parse(line) as Op
      } catch {
        skipped++ // a line cut short by SIGKILL mid-write
        continue
      }
      if (op.op === 'create') {
        for (const s of op.records) { const r = load(s); if (r !== undefined) records.set(r.name, r); else skipped++ }
      } else if (op.op === 'release') {
        for (const name of op.names) records.delete(name)
      } else if (op.op === 'lease') {
        for (const [name, expiresAt, ttl] of op.leases) { const r = records.get(name); if (r !== undefined) Object.assign(r, { expiresAt, ttl }) }
      } else if (op.op === 'own') {
        owners.set(op.namespace, op.owner)
      } else if (op.op === 'pool') {
        for (const e of op.entries) pooled.set(e.name, { ...e, ino: BigInt(e.ino), dev: BigInt(e.dev) })
      } else if (op.op === 'unpool') {
        for (const name of op.names) pooled.delete(name)
      }
    }
    return { records: [...records.values()], owners, pooled: [...pooled.values()], skipped }
  }

  created (records: SegmentRecord[]): void { this.#append({ op: 'create', records: records.map(store) }) }
  released (names: string[]): void { this.#append({ op: 'release', names }) }
  leased (records: SegmentRecord[]): void { this.#append({ op: 'lease', leases: records.map((r) => [r.name, r.expiresAt, r.ttl]) }) }
  owned (namespace: string, owner: string): void { this.#append({ op: 'own', namespace, owner }) }
  pooled (entries: PoolEntry[]): void {
    this.#append({ op: 'pool', entries: entries.map(({ name, size, key, ino, dev }) => ({ name, size, key, ino: ino.toString(), dev: dev.toString() })) })
  }

  unpooled (names: string[]): void { this.#append({ op: 'unpool', names }) }

  /** Rewrites the log as one snapshot of the live state (write, then rename: a crash leaves one or the other). */
  compact (records: Iterable<SegmentRecord>, owners: Map<string, string>): void {
    const ops: Op[] = [...owners].map(([namespace, owner]) => ({ op: 'own', namespace, owner }))
    const all = [...records].map(store)
    if (all.length > 0) ops.push({ op: 'create', records: all })
    const tmp = `${this.#file}.tmp`
    writeFileSync(tmp, ops.map((o) => JSON.stringify(o) + '\n').join(''), { mode: 0o600 })
    renameSync(tmp, this.#file)
    closeSync(this.#fd)
    this.#fd = openSync(this.#file, 'a', 0o600)
    this.#lines = ops.length
  }

  /** Lines written since the last compaction; the owner compacts when this outgrows the live state. */
  get lines (): number { return this.#lines }

  /** An instance that ends with nothing to remember leaves nothing behind, not even its directory. */
  close (empty: boolean): void {
    if (this.#closed) return
    this.#closed = true
    closeSync(this.#fd)
    if (empty) {
      rmSync(this.#file, { force: true })
      rmSync(join(this.dir, 'lock'), { force: true })
      try { rmdirSync(this.dir) } catch {}
      // The default root shared by instances (/dev/shm/.tensorshm) goes too once the last of them has gone.
      if (dirname(this.dir) === DEFAULT_ROOT) try { rmdirSync(DEFAULT_ROOT) } catch {}
    }
    closeSync(this.#lockFd)
  }

  #append (op: Op): void {
    // After close, only a last-resort synchronous shutdown writes, and its records are gone with the files anyway.
    if (this.#closed) return
    writeSync(this.#fd, JSON.stringify(op) + '\n')
    this.#lines++
  }
}
