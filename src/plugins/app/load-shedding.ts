import fp from 'fastify-plugin'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { errors } from '../../errors.js'

const RETRY_AFTER = 5
const RESOLUTION_MS = 10
const SAMPLE_MS = 1000

/**
 * Sheds load with 503 and Retry-After when the event loop lags; liveness still answers, readiness does not.
 * The delay comes from the runtime's own histogram: no probe that opens a file and could fail with EMFILE
 * (an uncaught error in a timer) when descriptors run short.
 */
export default fp(async (fastify) => {
  const { maxEventLoopDelay } = fastify.config
  if (maxEventLoopDelay === 0) return
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  histogram.enable()
  let delay = 0
  const timer = setInterval(() => {
    const mean = histogram.mean / 1e6 - RESOLUTION_MS
    delay = Number.isFinite(mean) ? Math.max(0, mean) : 0
    histogram.reset()
  }, SAMPLE_MS).unref()
  fastify.addHook('onClose', async () => { clearInterval(timer); histogram.disable() })
  fastify.addHook('onRequest', (request, reply, done) => {
    if (delay <= maxEventLoopDelay || request.url === '/healthz') { done(); return }
    request.log.warn({ delay }, 'shedding load')
    reply.header('retry-after', RETRY_AFTER)
    done(new errors.Overloaded(`the service is overloaded (event loop delay ${Math.round(delay)} ms); retry after ${RETRY_AFTER} s`))
  })
}, { name: 'load-shedding', dependencies: ['config'] })
