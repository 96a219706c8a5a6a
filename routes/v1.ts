import type { FastifyPluginAsync } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import { errors } from '../src/errors.js'
import { withErrors } from './error-responses.js'
import decode from './decode.js'
import segments from './segments/index.js'
import data from './segments/data.js'
import stats from './stats.js'

/** Everything under /v1: authenticated (when keys are configured), then rate-limited per key. */
const v1: FastifyPluginAsync = async (fastify) => {
  // Every /v1 operation documents the bearer scheme and the answers that authentication and shedding add.
  fastify.addHook('onRoute', (route) => {
    const schema = (route.schema ??= {}) as { security?: unknown, response?: Record<number, unknown> }
    schema.security = [{ bearerAuth: [] }]
    schema.response = withErrors(schema.response, 'Unauthorized', 'RateLimited', 'Overloaded', 'ShuttingDown')
  })
  fastify.addHook('onRequest', fastify.authenticate)
  const { rateLimit: perSecond } = fastify.config
  if (perSecond > 0) {
    await fastify.register(rateLimit, {
      max: perSecond,
      timeWindow: 1000,
      // Registered after authentication, so the bucket is the key's; without keys, the client address's.
      keyGenerator: (request) => request.caller.kind === 'key' ? request.caller.id : request.caller.kind === 'uid' ? `uid:${request.caller.uid}` : request.ip,
      errorResponseBuilder: (_request, context) => new errors.RateLimited(`more than ${context.max} requests per second for this key; retry after ${context.after}`)
    })
  }
  await fastify.register(segments)
  await fastify.register(data)
  await fastify.register(decode)
  await fastify.register(stats)
}

export default v1
