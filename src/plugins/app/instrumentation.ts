import fp from 'fastify-plugin'
import { createMetrics, type Metrics } from '../../observability/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

const started = Symbol('started')
declare module 'fastify' {
  interface FastifyRequest {
    [started]?: bigint
  }
}

export default fp(async (fastify) => {
  const metrics = createMetrics(fastify.segments, fastify.sweeper, fastify.config, fastify.log)
  fastify.decorate('metrics', metrics)
  fastify.addHook('onRequest', async (request) => { request[started] = process.hrtime.bigint() })
  fastify.addHook('onResponse', async (request, reply) => {
    const t0 = request[started]
    if (t0 === undefined) return
    // The route pattern, never the URL: segment names must not become label values.
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.request(request.method, route, reply.statusCode, Number(process.hrtime.bigint() - t0) / 1e9)
  })
}, { name: 'metrics', dependencies: ['segments'] })
