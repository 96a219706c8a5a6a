import fp from 'fastify-plugin'
import { SegmentService } from '../../lib/segments.js'

declare module 'fastify' {
  interface FastifyInstance {
    segments: SegmentService
  }
}

export default fp(async (fastify) => {
  const service = new SegmentService(fastify.config, fastify.log)
  fastify.decorate('segments', service)
  // Refuse new allocations as soon as closing starts; release once in-flight requests have finished.
  fastify.addHook('preClose', async () => { service.beginShutdown() })
  fastify.addHook('onClose', async () => {
    const released = service.shutdown()
    fastify.log.info({ released, kept: fastify.config.keepOnShutdown }, 'segments released at shutdown')
  })
}, { name: 'segments', dependencies: ['config'] })
