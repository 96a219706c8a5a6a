import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from './errors.js'

const StatusSchema = Type.Object({ status: Type.String() })

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/healthz', {
    schema: { tags: ['health'], summary: 'Liveness: the process answers', response: { 200: StatusSchema } }
  }, async () => ({ status: 'ok' }))

  fastify.get('/readyz', {
    schema: {
      tags: ['health'],
      summary: 'Readiness: segments can be created',
      response: { 200: StatusSchema, ...errorResponses('ShuttingDown') }
    }
  }, async () => {
    fastify.segments.assertReady()
    return { status: 'ready' }
  })
}

export default health
