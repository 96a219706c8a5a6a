import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import { errors } from '../../lib/errors.js'

const RETRY_AFTER = 5

/** Sheds load with 503 and Retry-After when the event loop lags; liveness still answers, readiness does not. */
export default fp(async (fastify) => {
  const { maxEventLoopDelay } = fastify.config
  if (maxEventLoopDelay === 0) return
  await fastify.register(underPressure, {
    maxEventLoopDelay,
    retryAfter: RETRY_AFTER,
    pressureHandler: (request, reply, type, value) => {
      if (request.url === '/healthz') return
      request.log.warn({ type, value }, 'shedding load')
      reply.header('retry-after', RETRY_AFTER)
      throw new errors.Overloaded(`the service is overloaded (${type}); retry after ${RETRY_AFTER} s`)
    }
  })
}, { name: 'under-pressure', dependencies: ['config'] })
