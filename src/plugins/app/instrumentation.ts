import fp from 'fastify-plugin'
import { createMetrics, type Metrics } from '../../observability/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

const PROBES = new Set(['/healthz', '/readyz'])

/**
 * Request metrics, and the one log line per request that operators read (Fastify's own request logging, two
 * lines per request, is off: see serverOptions). Both from one hook, with the duration Fastify measures anyway.
 */
export default fp(async (fastify) => {
  const metrics = createMetrics(fastify.segments, fastify.sweeper, fastify.config, fastify.log)
  fastify.decorate('metrics', metrics)
  fastify.addHook('onResponse', (request, reply, done) => {
    // The route pattern, never the URL: segment names must not become label values.
    const route = request.routeOptions.url ?? 'unmatched'
    const ms = reply.elapsedTime
    metrics.request(request.method, route, reply.statusCode, ms / 1000)
    const line = { method: request.method, url: request.url, route, statusCode: reply.statusCode, ms: Math.round(ms * 1000) / 1000 }
    // Probes come every few seconds from the kubelet: at debug, so that they do not drown the requests.
    if (PROBES.has(route)) request.log.debug(line, 'request')
    else request.log.info(line, 'request')
    done()
  })
}, { name: 'metrics', dependencies: ['segments'] })
