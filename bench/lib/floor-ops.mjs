// The kernel's part of what the service does, as operations to time: the same libc calls through the service's own
// native layer (dist/native), on real /dev/shm files under `prefix`. Each returns CPU µs (user + system, this
// process) per operation over a block of `n`; `cleanup` unlinks whatever an interrupted block left. Used by the
// floor.mjs CLI (a process of its own) and, block by block between the service's requests, by batch.mjs.
import { randomBytes } from 'node:crypto'
import { zeroSync } from '../../dist/native/io.js'
import { close, createExclusive, rename, reserveNow, stat, statName, truncate, unlink } from '../../dist/native/shm.js'

export function floorOps ({ prefix, n = 500, size = 65536 }) {
  const name = () => prefix + randomBytes(8).toString('hex')
  const made = new Set()

  function cpuUs (start) {
    const c = process.cpuUsage(start)
    return c.user + c.system
  }

  function fresh (to) {
    const fd = createExclusive(to, 0o600)
    made.add(to)
    return fd
  }

  /**
   * One tensor created as createSegment does it: O_EXCL open, fstat, ftruncate, posix_fallocate (no fchmod: the
   * umask leaves 0600 as it is). The fd stays open with the live segment (HeldFds) and is closed at its release,
   * outside this timing as outside the create's.
   */
  async function freshCreate () {
    const names = Array.from({ length: n }, name)
    const fds = []
    const t = process.cpuUsage()
    for (const to of names) {
      const fd = fresh(to)
      stat(fd)
      truncate(fd, size)
      reserveNow(fd, size)
      fds.push(fd)
    }
    const us = cpuUs(t) / n
    for (const fd of fds) close(fd)
    for (const to of names) { unlink(to); made.delete(to) }
    return us
  }

  /** Kept files, zeroed and open, as the pool holds them: [name, fd]. */
  async function kept () {
    const out = []
    for (let i = 0; i < n; i++) {
      const from = name()
      const fd = fresh(from)
      truncate(fd, size)
      reserveNow(fd, size)
      out.push([from, fd])
    }
    return out
  }

  /** One tensor taken from the pool: fstat of the kept fd, rename to the new name (the fd stays with the segment). */
  async function pooledCreate () {
    const files = await kept()
    const names = files.map(name)
    const t = process.cpuUsage()
    for (let i = 0; i < n; i++) {
      const [from, fd] = files[i]
      stat(fd)
      rename(from, names[i])
    }
    const us = cpuUs(t) / n
    for (let i = 0; i < n; i++) { close(files[i][1]); unlink(names[i]); made.delete(files[i][0]) }
    return us
  }

  /**
   * The pair of benchmark 1 with the pool, fd held throughout: release (lstat of the name, rename away, zero) and
   * create (fstat, rename to a new name).
   */
  async function pooledPair () {
    const files = await kept()
    const live = files.map(([from, fd]) => { const to = name(); rename(from, to); made.delete(from); made.add(to); return [to, fd] })
    const t = process.cpuUsage()
    for (let i = 0; i < n; i++) {
      const [at, fd] = live[i]
      statName(at)
      const away = name()
      rename(at, away)
      zeroSync(fd, size)
      stat(fd)
      const again = name()
      rename(away, again)
      made.delete(at)
      made.add(again)
      live[i] = [again, fd]
    }
    const us = cpuUs(t) / n
    for (const [to, fd] of live) { close(fd); unlink(to); made.delete(to) }
    return us
  }

  function cleanup () {
    for (const f of made) { try { unlink(f) } catch {} }
    made.clear()
  }

  return { freshCreate, pooledCreate, pooledPair, cleanup }
}
