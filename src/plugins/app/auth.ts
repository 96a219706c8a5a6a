import fp from 'fastify-plugin'
import bearerAuth from '@fastify/bearer-auth'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { createHash } from 'node:crypto'
import { errors } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** An onRequest hook: 401 without a valid key; sets request.owner. A no-op without configured keys. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    /** The key's id (never the key), or null under local trust. */
    owner: string | null
  }
}

/** An id for a key that logs, journals and labels can carry: the key itself never leaves memory. */
export const keyId = (key: string): string => `key-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`

export default fp(async (fastify) => {
  const { apiKeys } = fastify.config
  fastify.decorateRequest('owner', null)
  if (apiKeys.length === 0) {
    fastify.decorate('authenticate', async () => {})
    return
  }
  // bearer-auth compares in constant time; its hook is not used, so that failures answer in this API's error format.
  await fastify.register(bearerAuth, { keys: apiKeys, addHook: false, verifyErrorLogLevel: 'debug' })
  const verify = fastify.verifyBearerAuth
  if (verify === undefined) throw new Error('@fastify/bearer-auth did not decorate verifyBearerAuth')
  fastify.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => {
    await new Promise<void>((resolve, reject) => {
      verify(request, reply, (err) => {
        if (err === undefined) return resolve()
        reply.header('www-authenticate', 'Bearer realm="tensorshm"')
        reject(new errors.Unauthorized('Authorization: a valid bearer key is required'))
      })
    })
    const token = (request.headers.authorization ?? '').slice('Bearer '.length).trim()
    request.owner = keyId(token)
  })
}, { name: 'auth', dependencies: ['config'] })
