/* eslint-disable @typescript-eslint/no-explicit-any, camelcase -- the FFI boundary: koffi signatures are untyped, and bindings keep their C names */
import koffi from 'koffi'
import { constants } from 'node:fs'
import { arch } from 'node:process'
import { SysError } from './sys-error.js'

const libc = koffi.load('libc.so.6')

/**
 * Byte offsets of the struct stat fields we read, per ABI. fstat writes into a reused buffer that is read in
 * place: decoding the struct into a fresh object (72 bytes of padding as an array) was most of a stat's cost.
 */
export interface StatLayout { size: number, dev: number, ino: number, nlink: number, nlinkBytes: 4 | 8, mode: number, uid: number, gid: number, st_size: number, blocks: number }
const statLayouts: Record<string, StatLayout> = {
  x64: { size: 144, dev: 0, ino: 8, nlink: 16, nlinkBytes: 8, mode: 24, uid: 28, gid: 32, st_size: 48, blocks: 64 },
  arm64: { size: 128, dev: 0, ino: 8, mode: 16, nlink: 20, nlinkBytes: 4, uid: 24, gid: 28, st_size: 48, blocks: 64 }
}
const layout = statLayouts[arch]
if (layout === undefined) throw new Error(`tensorshm's native layer has no struct stat layout for ${arch}`)
export const STAT_LAYOUT: StatLayout = layout

type Fn<A extends unknown[], R> = ((...args: A) => R) & { async: (...args: any[]) => void }

export const shm_open = libc.func('int shm_open(const char *name, int oflag, uint32_t mode)') as Fn<[string, number, number], number>
export const shm_unlink = libc.func('int shm_unlink(const char *name)') as Fn<[string], number>
export const ftruncate = libc.func('int ftruncate(int fd, int64_t length)') as Fn<[number, number], number>
export const fchmod = libc.func('int fchmod(int fd, uint32_t mode)') as Fn<[number, number], number>
export const fchown = libc.func('int fchown(int fd, uint32_t owner, uint32_t group)') as Fn<[number, number, number], number>
export const fstat = libc.func('int fstat(int fd, void *buf)') as Fn<[number, Buffer], number>
export const fstatat = libc.func('int fstatat(int dirfd, const char *path, void *buf, int flags)') as Fn<[number, string, Buffer, number], number>
export const close = libc.func('int close(int fd)') as Fn<[number], number>
export const renameat2 = libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)') as Fn<[number, string, number, string, number], number>
// posix_fallocate returns the error number instead of setting errno.
export const posix_fallocate = libc.func('int posix_fallocate(int fd, int64_t offset, int64_t len)') as Fn<[number, number, number], number>

export const flock = libc.func('int flock(int fd, int operation)') as Fn<[number, number], number>
export const openat = libc.func('int openat(int dirfd, const char *path, int flags, uint32_t mode)') as Fn<[number, string, number, number], number>
export const mkdirat = libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)') as Fn<[number, string, number], number>
export const unlinkat = libc.func('int unlinkat(int dirfd, const char *path, int flags)') as Fn<[number, string, number], number>

// Sockets and processes: peer credentials of a Unix-socket caller, and a descriptor that tells when a process exits.
export const getsockopt = libc.func('int getsockopt(int fd, int level, int optname, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)') as Fn<[number, number, number, Buffer, [number]], number>
export const pidfd_open = libc.func('int pidfd_open(int pid, unsigned int flags)') as Fn<[number, number], number>
// struct pollfd { int fd; short events; short revents; }, packed by the caller into a Buffer.
export const poll = libc.func('int poll(uint8_t *fds, unsigned long nfds, int timeout)') as Fn<[Buffer, number, number], number>

export const errno = (): number => koffi.errno()

/** A call's return value, or the SysError its errno names when it failed (-1). */
export function checked (syscall: string, rc: number): number {
  if (rc === -1) throw new SysError(syscall, errno())
  return rc
}

// Flag values differ between ABIs (O_NOFOLLOW, O_DIRECTORY on arm): take them from Node, which has the host's.
export const O_RDONLY = constants.O_RDONLY
export const O_WRONLY = constants.O_WRONLY
export const O_RDWR = constants.O_RDWR
export const O_CREAT = constants.O_CREAT
export const O_EXCL = constants.O_EXCL
export const O_APPEND = constants.O_APPEND
export const O_NONBLOCK = constants.O_NONBLOCK
export const O_NOFOLLOW = constants.O_NOFOLLOW
export const O_DIRECTORY = constants.O_DIRECTORY
/** The same on every Linux ABI that Node runs on; Node does not export it. */
export const O_CLOEXEC = 0o2000000
export const S_IFMT = constants.S_IFMT
export const S_IFREG = constants.S_IFREG
export const S_IFDIR = constants.S_IFDIR
export const AT_FDCWD = -100
export const AT_SYMLINK_NOFOLLOW = 0x100
export const AT_REMOVEDIR = 0x200
export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2
export const LOCK_EX = 2
export const LOCK_NB = 4
export const SOL_SOCKET = 1
export const SO_PEERCRED = 17
export const SO_PEERGROUPS = 59
/** Linux 6.5 and later: a pidfd for the process that connected, taken by the kernel at connect time. */
export const SO_PEERPIDFD = 77
export const POLLIN = 1
