import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from './error-responses.js'

const metrics: FastifyPluginAsyncTypebox = async (fastify) => {
  if (fastify.config.authMetrics) fastify.addHook('onRequest', fastify.authenticate)
  fastify.get('/metrics', {
    schema: {
      tags: ['metrics'],
      summary: 'Prometheus metrics',
      operationId: 'metrics',
      description: 'The Prometheus text format: segments, bytes, allocations and their rate, releases by reason, leaks by kind, reclaims, quota rejections, /dev/shm capacity, decode and transfer volumes and durations, HTTP durations by route pattern, and the process metrics.',
      response: { 200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: Type.String() } } }, ...errorResponses('Unauthorized', 'Overloaded', 'ShuttingDown') }
    }
  }, async (_request, reply) => {
    const { registry } = fastify.metrics
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}

export default metrics
