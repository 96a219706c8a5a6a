import type { FastifySchemaValidationError } from 'fastify'
import { errors } from '../errors.js'

/** `/tensors/img/shape/0` under `body` becomes `body.tensors.img.shape[0]`. */
export function fieldPath (dataVar: string, instancePath: string): string {
  let out = dataVar
  for (const part of instancePath.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~')
    out += /^[0-9]+$/.test(key) ? `[${key}]` : `.${key}`
  }
  return out
}

function describe (e: FastifySchemaValidationError): string {
  const params = e.params as Record<string, unknown>
  if (e.keyword === 'required') return 'is required'
  if (e.keyword === 'additionalProperties') return `has an unexpected key "${String(params.additionalProperty)}"`
  return e.message ?? 'is invalid'
}

/**
 * ajv reports every branch of an anyOf; the deepest error is the one that names the field the client got wrong
 * (a TensorSpec or a list of them: `shape[0] must be >= 0` beats `must be array`).
 */
export function formatSchemaErrors (list: FastifySchemaValidationError[], dataVar: string): Error {
  const depth = (e: FastifySchemaValidationError) => e.instancePath.split('/').length + (e.keyword === 'required' ? 1 : 0)
  const best = list.filter((e) => e.keyword !== 'anyOf').sort((a, b) => depth(b) - depth(a))[0] ?? list[0]
  if (best === undefined) return new errors.InvalidRequest(`${dataVar} is invalid`)
  let path = fieldPath(dataVar, best.instancePath)
  const params = best.params as Record<string, unknown>
  if (best.keyword === 'required') path += `.${String(params.missingProperty)}`
  return new errors.InvalidRequest(`${path} ${describe(best)}`)
}
