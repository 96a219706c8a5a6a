import { constants } from 'node:os'

const namesByNumber = new Map<number, string>()
for (const [name, value] of Object.entries(constants.errno)) {
  // EAGAIN/EWOULDBLOCK and EDEADLK/EDEADLOCK share numbers: keep the first, canonical name.
  if (!namesByNumber.has(value)) namesByNumber.set(value, name)
}

export function errnoName (errno: number): string {
  return namesByNumber.get(errno) ?? `E${errno}`
}

/** A failed libc call: carries the errno name (EEXIST, ENOENT, ENOSPC, ...) and the call that failed. */
export class SysError extends Error {
  readonly code: string
  readonly errno: number
  readonly syscall: string

  constructor (syscall: string, errno: number) {
    const code = errnoName(errno)
    super(`${syscall} failed: ${code}`)
    this.name = 'SysError'
    this.code = code
    this.errno = errno
    this.syscall = syscall
  }
}

export function isSysError (err: unknown, code?: string): err is SysError {
  return err instanceof SysError && (code === undefined || err.code === code)
}
