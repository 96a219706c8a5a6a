import { randomBytes } from 'node:crypto'
import { MAX_NAME_LENGTH } from '../../native/shm.js'
import { errors } from '../errors.js'

const HEX16 = /^[0-9a-f]{16}$/

/** CSPRNG output drawn 4 KiB at a time: one call into OpenSSL per 512 names instead of one per name. */
const POOL = 4096
let entropy = Buffer.alloc(0)
let offset = POOL

/** A fresh segment name: the prefix and 64 bits from the CSPRNG, as NOS names its segments. */
export function newSegmentName (prefix: string): string {
  if (offset + 8 > entropy.length) { entropy = randomBytes(POOL); offset = 0 }
  offset += 8
  // Each 8 bytes are used once; hex of a subarray copies nothing more than the string.
  return prefix + entropy.toString('hex', offset - 8, offset)
}

/** What keeps `name` from being one this service could have made (`<prefix><16 lowercase hex>`), if anything. */
function problemWith (name: string, prefix: string): string | undefined {
  if (name.includes('\0')) return 'contains a NUL byte'
  if (name.includes('/')) return 'contains a slash'
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`
  if (!name.startsWith(prefix)) return 'does not carry this service\'s segment prefix'
  if (!HEX16.test(name.slice(prefix.length))) return 'is not the prefix followed by 16 lowercase hex digits'
  return undefined
}

/** Whether `name` is one this service could have made (a journal's record, say). */
export const isSegmentName = (name: unknown, prefix: string): name is string => typeof name === 'string' && problemWith(name, prefix) === undefined

/**
 * Names a client hands back are checked before anything touches the file system:
 * only `<our prefix><16 lowercase hex>` can ever be one of ours.
 */
export function checkSegmentName (name: string, prefix: string, field = 'name'): string {
  const problem = problemWith(name, prefix)
  if (problem !== undefined) throw new errors.InvalidName(`${field}: the segment name ${problem}`)
  return name
}
