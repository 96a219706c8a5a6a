import { randomBytes } from 'node:crypto'
import { MAX_NAME_LENGTH } from '../../native/shm.js'
import { errors } from '../errors.js'

const HEX16 = /^[0-9a-f]{16}$/

/** A fresh segment name: the prefix and 64 bits from the CSPRNG, as NOS names its segments. */
export function newSegmentName (prefix: string): string {
  return prefix + randomBytes(8).toString('hex')
}

/** Whether `name` is one this service could have made: its prefix and 16 lowercase hex digits. */
export const isSegmentName = (name: unknown, prefix: string): name is string =>
  typeof name === 'string' && name.length <= MAX_NAME_LENGTH && name.startsWith(prefix) && HEX16.test(name.slice(prefix.length))

/**
 * Names a client hands back are checked before anything touches the file system:
 * only `<our prefix><16 lowercase hex>` can ever be one of ours.
 */
export function checkSegmentName (name: string, prefix: string, field = 'name'): string {
  let problem: string | undefined
  if (name.includes('\0')) problem = 'contains a NUL byte'
  else if (name.includes('/')) problem = 'contains a slash'
  else if (name.length > MAX_NAME_LENGTH) problem = `is longer than ${MAX_NAME_LENGTH} characters`
  else if (!name.startsWith(prefix)) problem = 'does not carry this service\'s segment prefix'
  else if (!HEX16.test(name.slice(prefix.length))) problem = 'is not the prefix followed by 16 lowercase hex digits'
  if (problem !== undefined) throw new errors.InvalidName(`${field}: the segment name ${problem}`)
  return name
}
