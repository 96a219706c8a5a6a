import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { errors } from '../../lib/errors.js'
import { ErrorSchema } from '../../../routes/errors.js'

// Fastify's own failures, renamed into this service's registry so that clients see one set of codes.
const fromFastify: Record<string, (message: string) => FastifyError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new errors.BodyTooLarge('body: the request body is larger than allowed'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => new errors.UnsupportedMediaType('Content-Type: this route does not read that media type'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new errors.InvalidJson('body: a JSON body is required'),
  FST_ERR_CTP_INVALID_JSON_BODY: (message) => new errors.InvalidJson(`body: ${message}`),
  FST_ERR_BAD_URL: () => new errors.InvalidRequest('url: a path component is not valid percent-encoded UTF-8'),
  FST_ERR_MAX_PARAM_LENGTH: () => new errors.InvalidName('name: the segment name is far longer than any name this service makes')
}

function normalize (err: FastifyError): FastifyError {
  const mapped = fromFastify[err.code]
  if (mapped !== undefined) return mapped(err.message)
  if (err instanceof SyntaxError && err.statusCode === 400) return new errors.InvalidJson(`body: ${err.message}`)
  if (err.code?.startsWith('TSHM_') === true) return err
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) return Object.assign(new errors.InvalidRequest(err.message), { statusCode: status })
  return err
}

/** Every error answer, whoever raised it: `{statusCode, code, error, message}`, never a stack or a path. */
export function sendError (raw: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
  const err = normalize(raw)
  const statusCode = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
  if (statusCode >= 500) request.log.error({ err: raw }, 'request failed')
  const body = statusCode >= 500 && !err.code?.startsWith('TSHM_')
    ? { statusCode: 500, code: 'TSHM_INTERNAL', error: STATUS_CODES[500] as string, message: 'internal error; the service log has the details' }
    : { statusCode, code: err.code, error: STATUS_CODES[statusCode] ?? 'Error', message: err.message }
  if (reply.sent || reply.raw.headersSent) return
  // Running out of open files is momentary: the client is told when to come back.
  if (body.code === 'TSHM_BUSY') reply.header('retry-after', 1)
  return reply.code(body.statusCode).type('application/json; charset=utf-8').send(body)
}

export default fp(async (fastify) => {
  fastify.addSchema(ErrorSchema)
  fastify.setErrorHandler(sendError)
  fastify.setNotFoundHandler((request, reply) => {
    sendError(new errors.RouteNotFound(`${request.method} ${request.url.split('?')[0] ?? ''}: no such route`), request, reply)
  })
}, { name: 'errors' })
