import { Type } from 'typebox'
import { errorInfo, errorNames, type ErrorName } from '../src/errors.js'

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

/** The errors a route's response entries document, read back from their descriptions. */
export function documentedErrors (response: Record<number, unknown> | undefined): ErrorName[] {
  const byCode = new Map(errorNames.map((n) => [errorInfo(n).code, n]))
  const text = JSON.stringify(Object.entries(response ?? {}).filter(([status]) => Number(status) >= 400))
  return [...new Set([...text.matchAll(/TSHM_[A-Z_]+/g)].map((m) => byCode.get(m[0])).filter((n): n is ErrorName => n !== undefined))]
}

/** A route's response entries with `names` documented as well, merged by status with what it documents already. */
export function withErrors (response: Record<number, unknown> | undefined, ...names: ErrorName[]): Record<number, unknown> {
  const success = Object.fromEntries(Object.entries(response ?? {}).filter(([status]) => Number(status) < 400))
  return { ...success, ...errorResponses(...documentedErrors(response), ...names) }
}
