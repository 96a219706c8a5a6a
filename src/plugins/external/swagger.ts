import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { pkg } from '../../lib/package.js'

export default fp(async (fastify) => {
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tensorshm',
        version: pkg.version,
        description: 'Brokers POSIX shared-memory segments for numpy tensors: register specs, attach by name, decode descriptor dicts, stream data in and out.'
      },
      tags: [
        { name: 'segments', description: 'Create, list and release shared-memory segments' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    }
  })
  await fastify.register(swaggerUi, { routePrefix: '/docs' })
  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger())
}, { name: 'swagger' })
