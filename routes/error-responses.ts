import { Type } from 'typebox'
import { errorInfo, type ErrorName } from '../src/errors.js'

const common: ErrorName[] = ['Internal']

/** Response entries for a route's possible errors, grouped by status, each listing its codes. */
export function errorResponses (...names: ErrorName[]): Record<number, unknown> {
  const byStatus = new Map<number, string[]>()
  for (const info of [...new Set([...names, ...common])].map(errorInfo)) {
    const lines = byStatus.get(info.statusCode) ?? []
    lines.push(`\`${info.code}\`: ${info.description}`)
    byStatus.set(info.statusCode, lines)
  }
  const out: Record<number, unknown> = {}
  for (const [status, lines] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[status] = Type.Ref('Error', { description: lines.join('\n\n') })
  }
  return out
}
