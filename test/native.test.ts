import t from 'tap'
import { execFileSync } from 'node:child_process'
import { closeSync, fstatSync, readSync, symlinkSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import * as shm from '../native/shm.js'
import { createSegment, probe, unlinkQuietly } from '../native/segment-file.js'
import { errnoName } from '../native/sys-error.js'
import { checkNoLeftovers, shmFiles, suitePrefix } from './helpers/build.js'

const prefix = suitePrefix('native')
const fresh = () => prefix + randomBytes(8).toString('hex')
const uid = process.geteuid?.() ?? 0
/** What probe finds under `name`, given the inode we expect there. */
function presence (name: string, identity: shm.Identity): string {
  const found = probe(name, { uid, identity })
  if (found.kind === 'ours') shm.close(found.fd)
  return found.kind
}

t.test('errno names', async (t) => {
  t.equal(errnoName(17), 'EEXIST')
  t.equal(errnoName(2), 'ENOENT')
  t.equal(errnoName(28), 'ENOSPC')
  t.equal(errnoName(11), 'EAGAIN')
  t.equal(errnoName(99999), 'E99999')
})

t.test('shm_open with O_CREAT|O_EXCL refuses an existing name with EEXIST; unlink of a missing one is ENOENT', async (t) => {
  const name = fresh()
  const fd = shm.createExclusive(name, 0o600)
  t.throws(() => shm.createExclusive(name, 0o600), { name: 'SysError', code: 'EEXIST', syscall: 'shm_open', errno: 17 })
  shm.close(fd)
  shm.unlink(name)
  t.throws(() => shm.unlink(name), { code: 'ENOENT', syscall: 'shm_unlink' })
  t.throws(() => shm.open(name, false), { code: 'ENOENT', syscall: 'shm_open' })
  t.throws(() => shm.close(fd), { code: 'EBADF', syscall: 'close' })
  t.throws(() => shm.stat(fd), { code: 'EBADF', syscall: 'fstat' })
  t.throws(() => shm.truncate(-1, 10), { code: 'EBADF' })
  t.notOk(unlinkQuietly(name))
})

t.test('statName looks at a name without opening it or following a link', async (t) => {
  const name = fresh()
  const created = await createSegment(name, { size: 4096, mode: 0o600, reserve: false })
  const byName = shm.statName(name)
  t.same(byName && { ino: byName.ino, dev: byName.dev, size: byName.size, nlink: byName.nlink, regular: byName.regular }, { ino: created.ino, dev: created.dev, size: 4096, nlink: 1, regular: true })
  const link = fresh()
  symlinkSync(`/dev/shm/${name}`, `/dev/shm/${link}`)
  t.equal(shm.statName(link)?.regular, false, 'a symlink is a symlink, not its target')
  const fifo = fresh()
  execFileSync('mkfifo', [`/dev/shm/${fifo}`])
  t.equal(shm.statName(fifo)?.regular, false, 'a FIFO is looked at without waiting for a writer')
  for (const n of [name, link, fifo]) shm.unlink(n)
  t.equal(shm.statName(name), undefined, 'nothing there: undefined')
  t.throws(() => shm.statName('../etc/passwd'), { code: 'EINVAL' }, 'and names that are paths never reach the kernel')
})

t.test('names that are paths never reach shm_open', async (t) => {
  for (const bad of ['', 'a/b', '../etc/passwd', 'a\0b', '.', '..', 'x'.repeat(255)]) {
    t.throws(() => shm.open(bad, false), { code: 'EINVAL' }, JSON.stringify(bad))
  }
})

t.test('fstat through koffi agrees with the kernel (struct stat layout)', async (t) => {
  const name = fresh()
  const created = await createSegment(name, { size: 12345, mode: 0o640, reserve: true })
  const fd = shm.open(name, true)
  const ours = shm.stat(fd)
  const node = fstatSync(fd, { bigint: true })
  t.equal(ours.size, 12345)
  t.equal(ours.ino, node.ino)
  t.equal(ours.dev, node.dev)
  t.equal(ours.nlink, 1)
  t.equal(ours.mode, Number(node.mode))
  t.equal(ours.uid, Number(node.uid))
  t.equal(ours.gid, Number(node.gid))
  t.equal(ours.allocated, Number(node.blocks) * 512)
  t.ok(ours.allocated >= 12345, 'posix_fallocate backed the pages')
  t.equal(ours.mode & 0o777, 0o640, 'fchmod applied the mode whatever the umask')
  t.same({ ino: created.ino, dev: created.dev }, { ino: ours.ino, dev: ours.dev })
  // Sizes past 32 bits are read from both halves (sparse: no page is taken).
  const sparse = fresh()
  const big = shm.createExclusive(sparse, 0o600)
  shm.truncate(big, 5 * 2 ** 32 + 7)
  t.equal(shm.stat(big).size, 5 * 2 ** 32 + 7)
  shm.close(big)
  shm.unlink(sparse)
  // Node's fs works on the raw fd: the I/O path the data plane uses.
  writeSync(fd, Buffer.from('hello'), 0, 5, 100)
  const back = Buffer.alloc(5)
  readSync(fd, back, 0, 5, 100)
  t.equal(back.toString(), 'hello')
  closeSync(fd)
  t.equal(presence(name, created), 'ours')
  shm.unlink(name)
  t.equal(presence(name, created), 'missing')
  const again = await createSegment(name, { size: 1, mode: 0o600, reserve: false })
  t.equal(presence(name, created), 'foreign', 'a new file under the old name is not ours')
  shm.unlink(again.name)
})

t.test('createSegment: the mode asked for whatever the umask; a small one is made without a promise; keepOpen hands the fd back', async (t) => {
  // 0600 is what shm_open was asked for: fchmod is skipped only when the umask left exactly that.
  const old = process.umask(0o277)
  let stripped
  try {
    stripped = createSegment(fresh(), { size: 4096, mode: 0o600, reserve: true })
  } finally {
    process.umask(old)
  }
  t.notOk(stripped instanceof Promise, 'reserved on the loop: no promise')
  const made = stripped as Awaited<typeof stripped>
  const st = shm.statName(made.name)
  t.equal(st === undefined ? -1 : st.mode & 0o7777, 0o600, 'a umask that took the owner\'s write bit does not reach the file')
  t.equal(made.fd, undefined, 'closed unless asked')
  const kept = await createSegment(fresh(), { size: 8192, mode: 0o640, reserve: true, keepOpen: true })
  t.type(kept.fd, 'number')
  const fd = kept.fd as number
  const via = shm.stat(fd)
  t.same({ ino: via.ino, dev: via.dev, size: via.size, mode: via.mode & 0o7777 }, { ino: kept.ino, dev: kept.dev, size: 8192, mode: 0o640 }, 'the fd is the file, sized and moded')
  shm.close(fd)
  const big = createSegment(fresh(), { size: 2 << 20, mode: 0o600, reserve: true })
  t.ok(big instanceof Promise, 'a large reservation runs on the thread pool')
  t.equal((await big).size, 2 << 20)
  for (const n of shmFiles(prefix)) shm.unlink(n)
})

t.test('ftruncate without reserve leaves the file sparse; reserve backs it', async (t) => {
  const a = await createSegment(fresh(), { size: 4 << 20, mode: 0o600, reserve: false })
  const b = await createSegment(fresh(), { size: 4 << 20, mode: 0o600, reserve: true })
  const statOf = (name: string) => { const fd = shm.open(name, false); try { return shm.stat(fd) } finally { shm.close(fd) } }
  const sa = statOf(a.name)
  const sb = statOf(b.name)
  t.equal(sa.size, 4 << 20)
  t.equal(sa.allocated, 0)
  t.equal(sb.allocated, 4 << 20)
  shm.unlink(a.name)
  shm.unlink(b.name)
})

t.test('a reservation larger than /dev/shm fails with ENOSPC and leaves nothing', async (t) => {
  const name = fresh()
  // Not allocated: posix_fallocate checks the length against the file system's limit before touching a page.
  await t.rejects(async () => await createSegment(name, { size: Number.MAX_SAFE_INTEGER, mode: 0o600, reserve: true }), { name: 'SysError', code: 'ENOSPC', syscall: 'posix_fallocate' })
  t.same(shmFiles(prefix), [])
})

t.test('rename moves a segment to a new name and keeps the inode', async (t) => {
  const from = await createSegment(fresh(), { size: 16, mode: 0o600, reserve: false })
  const to = fresh()
  shm.rename(from.name, to)
  t.equal(presence(to, from), 'ours')
  t.equal(presence(from.name, from), 'missing')
  t.throws(() => shm.rename(from.name, fresh()), { code: 'ENOENT' })
  t.throws(() => shm.rename(to, '../x'), { code: 'EINVAL' })
  const other = await createSegment(fresh(), { size: 8, mode: 0o600, reserve: false })
  t.throws(() => shm.rename(to, other.name), { code: 'EEXIST', syscall: 'renameat2' }, 'never over an existing file')
  t.equal(presence(other.name, other), 'ours')
  shm.unlink(other.name)
  shm.unlink(to)
})

t.test('capacity reads the tmpfs limits', async (t) => {
  const c = shm.capacity()
  t.ok(c.total > 0 && c.free > 0 && c.free <= c.total)
})

t.test('writevAt gathers many buffers into one write at an offset; zeroFill clears small and large files', async (t) => {
  const { writevAt, zeroFill } = await import('../native/io.js')
  const seg = await createSegment(fresh(), { size: 3 << 20, mode: 0o600, reserve: false })
  const fd = shm.open(seg.name, true)
  const parts = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1000 + i, i))
  await writevAt(fd, parts, 5)
  const back = Buffer.alloc(parts.reduce((n, p) => n + p.length, 0))
  readSync(fd, back, 0, back.length, 5)
  t.same(back, Buffer.concat(parts))
  await zeroFill(fd, 3 << 20)
  const all = Buffer.alloc(3 << 20, 1)
  readSync(fd, all, 0, all.length, 0)
  t.ok(all.every((b) => b === 0), 'zeroed on the thread pool')
  writeSync(fd, Buffer.alloc(100, 7), 0, 100, 0)
  await zeroFill(fd, 100)
  readSync(fd, all, 0, 100, 0)
  t.ok(all.subarray(0, 100).every((b) => b === 0), 'zeroed on the event loop')
  closeSync(fd)
  shm.unlink(seg.name)
})

checkNoLeftovers(t, prefix)
