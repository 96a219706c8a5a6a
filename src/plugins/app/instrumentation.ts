import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify'
import { createMetrics, type Metrics } from '../../observability/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

const PROBES = new Set(['/healthz', '/readyz'])

/**
 * Request metrics, and the one log line per request that operators read (Fastify's own request logging, two
 * lines per request, is off: see serverOptions). Each route gets its own hook that knows its pattern, since
 * `request.routeOptions` builds a new object on every read; requests that match no route have a hook of their own.
 */
export default fp(async (fastify) => {
  const metrics = createMetrics(fastify.segments, fastify.sweeper, fastify.config, fastify.log)
  fastify.decorate('metrics', metrics)

  // The route pattern, never the URL: segment names must not become label values.
  const record = (request: FastifyRequest, reply: FastifyReply, route: string): void => {
    const ms = reply.elapsedTime
    metrics.request(request.method, route, reply.statusCode, ms / 1000)
    const line = { method: request.method, url: request.url, route, statusCode: reply.statusCode, ms: Math.round(ms * 1000) / 1000 }
    // Probes come every few seconds from the kubelet: at debug, so that they do not drown the requests.
    if (PROBES.has(route)) request.log.debug(line, 'request')
    else request.log.info(line, 'request')
  }
  fastify.addHook('onRoute', (route) => {
    const url = route.url
    const hook: onResponseHookHandler = (request, reply, done) => { record(request, reply, url); done() }
    const existing = route.onResponse === undefined ? [] : Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]
    route.onResponse = [...existing, hook]
  })
  fastify.addHook('onResponse', (request, reply, done) => {
    if (request.is404) record(request, reply, 'unmatched')
    done()
  })
}, { name: 'metrics', dependencies: ['segments'] })
