import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { clientError, errors, translate } from '../../errors.js'
import { ErrorSchema } from '../../http/error-schema.js'

/** Every error answer, whoever raised it: `{statusCode, code, error, message}`, never a stack or a path. */
export function sendError (raw: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
  const err = translate(raw)
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

/** What the HTTP parser refused, written to the socket in this API's format before it is closed. */
export function sendClientError (err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const e = clientError(err)
  const statusCode = e.statusCode ?? 400
  const body = JSON.stringify({ statusCode, code: e.code, error: STATUS_CODES[statusCode] ?? 'Error', message: e.message })
  if (socket.writable) socket.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  socket.destroy()
}

export default fp(async (fastify) => {
  fastify.addSchema(ErrorSchema)
  fastify.setErrorHandler(sendError)
  fastify.setNotFoundHandler((request, reply) => {
    sendError(new errors.RouteNotFound(`${request.method} ${request.url.split('?')[0] ?? ''}: no such route`), request, reply)
  })
}, { name: 'errors' })
