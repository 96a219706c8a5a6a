import fp from 'fastify-plugin'
import { Journal } from '../../lib/journal.js'
import { SegmentService } from '../../lib/segments.js'
import { Sweeper } from '../../lib/sweeper.js'

declare module 'fastify' {
  interface FastifyInstance {
    segments: SegmentService
    sweeper: Sweeper
  }
}

export default fp(async (fastify) => {
  const { config, log } = fastify
  const journal = Journal.open(config.stateDir)
  const service = new SegmentService(config, log, { journal })
  const sweeper = new Sweeper(service, config.segmentPrefix, log)
  fastify.decorate('segments', service)
  fastify.decorate('sweeper', sweeper)

  // After every plugin has subscribed to the service's events, so that records dropped at recovery are counted.
  fastify.addHook('onReady', async () => {
    const vanished = service.recover()
    log.info({ stateDir: config.stateDir, recovered: service.registry.count, vanished: vanished.length }, 'journal replayed')
    sweeper.start(config.sweepIntervalMs)
  })
  // Refuse new allocations as soon as closing starts; release once in-flight requests have finished.
  fastify.addHook('preClose', async () => {
    sweeper.stop()
    service.beginShutdown()
  })
  fastify.addHook('onClose', async () => {
    const released = await service.shutdown()
    log.info({ released, kept: config.keepOnShutdown ? service.registry.count : 0 }, 'segments released at shutdown')
  })
}, { name: 'segments', dependencies: ['config'] })
