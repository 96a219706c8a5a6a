import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from './error-responses.js'

const StatusSchema = Type.Object({ status: Type.String() })

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/healthz', {
    schema: {
      tags: ['health'],
      summary: 'Liveness: the process answers',
      description: 'Always 200 while the process runs, even when load is being shed; point liveness probes here.',
      operationId: 'healthz',
      response: { 200: { ...StatusSchema, description: 'Alive.' } }
    }
  }, async () => ({ status: 'ok' }))

  fastify.get('/readyz', {
    schema: {
      tags: ['health'],
      summary: 'Readiness: segments can be created',
      description: '503 while shutting down or shedding load; point readiness probes here.',
      operationId: 'readyz',
      response: { 200: { ...StatusSchema, description: 'Ready.' }, ...errorResponses('ShuttingDown', 'Overloaded') }
    }
  }, async () => {
    fastify.segments.assertReady()
    return { status: 'ready' }
  })
}

export default health
