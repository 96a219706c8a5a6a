import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { once } from 'node:events'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { socketDir } from './helpers/local.js'
import { localUser, sandboxUnavailable } from './helpers/sandbox.js'
import { runService, startService } from './helpers/server.js'

const skip = sandboxUnavailable()
const prefix = suitePrefix('sockpath')
const env = (t: import('tap').Test, socket: string, extra: Record<string, string> = {}) =>
  ({ TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t), TENSORSHM_PORT: '0', TENSORSHM_SOCKET: socket, ...extra })
const refused = async (t: import('tap').Test, socket: string, pattern: RegExp, extra: Record<string, string> = {}) => {
  const { code, output } = await runService(env(t, socket, extra), { timeoutMs: 20_000 })
  t.equal(code, 1, 'the start is refused')
  t.match(output, pattern)
  t.notMatch(output, /Server listening/, 'nothing listens')
}

t.test('a symlink planted at the socket path: refused, the link and its target untouched', { skip }, async (t) => {
  const dir = socketDir(t)
  writeFileSync(`${dir}/target`, 'precious')
  symlinkSync(`${dir}/target`, `${dir}/s.sock`)
  await refused(t, `${dir}/s.sock`, /TENSORSHM_SOCKET: .*s\.sock is a symbolic link; nothing was changed/)
  t.equal(readlinkSync(`${dir}/s.sock`), `${dir}/target`)
  t.equal(readFileSync(`${dir}/target`, 'utf8'), 'precious')
})

t.test('a regular file, or another user\'s socket, at the path: refused and left alone', { skip }, async (t) => {
  const dir = socketDir(t)
  writeFileSync(`${dir}/file.sock`, 'data')
  await refused(t, `${dir}/file.sock`, /file\.sock exists and is not a socket/)
  t.equal(readFileSync(`${dir}/file.sock`, 'utf8'), 'data')

  // A socket bound by another user (in a sticky directory that user may write), left behind as if stale.
  const mallory = localUser(t)
  const sticky = `${dir}/sticky`
  mkdirSync(sticky)
  chmodSync(sticky, 0o1777)
  execFileSync('runuser', ['-u', mallory.name, '--', 'python3', '-c', `import socket; socket.socket(socket.AF_UNIX).bind("${sticky}/s.sock")`])
  const before = lstatSync(`${sticky}/s.sock`)
  await refused(t, `${sticky}/s.sock`, new RegExp(`s\\.sock is a socket of uid ${mallory.uid}, not this service's`))
  t.equal(lstatSync(`${sticky}/s.sock`).ino, before.ino, 'the same socket is still there')
})

t.test('another user\'s symlink on the way to the socket (planted in a sticky directory): refused, since its owner could repoint it later', { skip }, async (t) => {
  const dir = socketDir(t)
  const sticky = `${dir}/tmp`
  mkdirSync(sticky)
  chmodSync(sticky, 0o1777)
  const mallory = localUser(t)
  execFileSync('runuser', ['-u', mallory.name, '--', 'ln', '-s', sticky, `${sticky}/tshm`])
  await refused(t, `${sticky}/tshm/s.sock`, new RegExp(`TENSORSHM_SOCKET: .*/tmp/tshm is a symbolic link of uid ${mallory.uid}, neither root nor this service`))
  t.equal(readlinkSync(`${sticky}/tshm`), sticky, 'the link is left as it was')
  t.throws(() => lstatSync(`${sticky}/s.sock`), 'and nothing was bound behind it')
})

t.test('a live socket of another process: refused, and that process keeps serving on it', { skip }, async (t) => {
  const dir = socketDir(t)
  const path = `${dir}/s.sock`
  // The service's probe connects and hangs up at once: that reset is the other process's business, ignored.
  const other = createServer((c) => { c.on('error', () => {}); c.end('still mine') })
  other.listen(path)
  await once(other, 'listening')
  t.teardown(() => { other.close() })
  await refused(t, path, /another process is listening on .*s\.sock; nothing was changed/)
  const c = connect(path)
  const [data] = await once(c, 'data') as [Buffer]
  c.destroy()
  t.equal(data.toString(), 'still mine')
})

t.test('a directory others could write to (no sticky bit), a missing one, a path that is not absolute or too long', { skip }, async (t) => {
  const dir = socketDir(t)
  mkdirSync(`${dir}/open`)
  chmodSync(`${dir}/open`, 0o777)
  await refused(t, `${dir}/open/s.sock`, /the directory .*\/open \(mode 0777\) is writable by its group or others without the sticky bit/)
  t.throws(() => lstatSync(`${dir}/open/s.sock`), 'no socket made')
  await refused(t, `${dir}/missing/s.sock`, /the directory .*missing cannot be used \(ENOENT\)/)
  for (const [socket, pattern] of [['relative.sock', /TENSORSHM_SOCKET/], [`/tmp/${'x'.repeat(120)}.sock`, /TENSORSHM_SOCKET/], ['/tmp/a/../b.sock', /TENSORSHM_SOCKET: .*no \. or \.\./]] as const) {
    const { code, output } = await runService(env(t, socket))
    t.equal(code, 2, `${socket.slice(0, 20)}: a configuration error`)
    t.match(output, pattern)
  }
  const { code, output } = await runService({ TENSORSHM_TCP: 'false', TENSORSHM_STATE_DIR: stateDir(t) })
  t.equal(code, 2)
  t.match(output, /TENSORSHM_TCP: false needs TENSORSHM_SOCKET/)
})

t.test('a stale socket of this uid is replaced; a graceful stop removes the socket', { skip }, async (t) => {
  const dir = socketDir(t)
  const path = `${dir}/s.sock`
  // Bound, never listened on, left behind: what a SIGKILLed run leaves.
  execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind("${path}")`])
  const svc = await startService(t, env(t, path))
  t.match(svc.log(), /replacedStale":true/)
  t.equal(lstatSync(path).mode & 0o777, 0o660, 'made anew with TENSORSHM_SOCKET_MODE')
  t.equal(await svc.stop(), 0)
  t.throws(() => lstatSync(path), 'removed at shutdown')
})

t.test('TENSORSHM_TCP=false: only the socket serves', { skip }, async (t) => {
  const dir = socketDir(t)
  const path = `${dir}/s.sock`
  const child = spawn(process.execPath, ['dist/src/server.js'], { env: { ...process.env, ...env(t, path, { TENSORSHM_TCP: 'false' }) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const exited = once(child, 'exit')
  t.teardown(async () => { if (child.exitCode === null) { child.kill('SIGKILL'); await exited } })
  for (let i = 0; i < 200 && !out.includes('listening on the Unix socket'); i++) await new Promise((resolve) => setTimeout(resolve, 25))
  const res = execFileSync('curl', ['-s', '--unix-socket', path, 'http://localhost/healthz']).toString()
  t.match(res, /ok/)
  t.notMatch(out, /Server listening/, 'no TCP listener')
  child.kill('SIGTERM')
  await exited
  t.same(shmFiles(prefix), [])
})

checkNoLeftovers(t, prefix)
