import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { pkg } from '../../package.js'

export default fp(async (fastify) => {
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tensorshm',
        version: pkg.version,
        description: 'Brokers POSIX shared-memory segments for numpy tensors: register specs, attach by name, decode descriptor dicts, stream data in and out.'
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'Needed on /v1 routes when the service has API keys (TENSORSHM_API_KEYS); each namespace belongs to the key that first used it.' }
        }
      },
      tags: [
        { name: 'segments', description: 'Create, list and release shared-memory segments' },
        { name: 'data', description: 'Stream tensor bytes in and out of a segment' },
        { name: 'decode', description: 'Turn encoded descriptor dicts back into tensors' },
        { name: 'metrics', description: 'Prometheus metrics and the same figures as JSON' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    }
  })
  const hooks = fastify.config.authDocs ? { onRequest: fastify.authenticate } : undefined
  await fastify.register(swaggerUi, { routePrefix: '/docs', ...(hooks === undefined ? {} : { uiHooks: hooks }) })
  fastify.get('/openapi.json', { schema: { hide: true }, ...hooks }, async () => fastify.swagger())
}, { name: 'swagger', dependencies: ['auth'] })
