import fp from 'fastify-plugin'
import { Journal } from '../../journal/journal.js'
import { SegmentService } from '../../segments/service.js'
import { StateDir } from '../../journal/state-dir.js'
import { Sweeper } from '../../segments/sweeper.js'

declare module 'fastify' {
  interface FastifyInstance {
    segments: SegmentService
    sweeper: Sweeper
  }
}

export default fp(async (fastify) => {
  const { config, log } = fastify
  const dir = StateDir.open(config.stateDir, process.geteuid?.() ?? 0)
  for (const moved of dir.movedAside) log.warn({ moved }, 'another user had put something where the state directory goes; moved it aside')
  const journal = Journal.open(dir, config.segmentPrefix, (err, what) => { log.warn({ err, what }, 'the journal could not be written') })
  const service = new SegmentService(config, log, journal)
  const sweeper = new Sweeper(service, config.segmentPrefix, log)
  fastify.decorate('segments', service)
  fastify.decorate('sweeper', sweeper)

  // While closing, every request but liveness is refused in this API's format (Fastify's own 503 has no code).
  fastify.addHook('onRequest', (request, _reply, done) => {
    if (request.url === '/healthz') { done(); return }
    try { service.assertOpen() } catch (err) { done(err as Error); return }
    done()
  })

  // After every plugin has subscribed to the service's events, so that what recovery drops is counted.
  fastify.addHook('onReady', async () => {
    const r = service.recover()
    log.info({ stateDir: config.stateDir, recovered: r.recovered, vanished: r.vanished.length, cleaned: r.cleaned, expired: r.expired, skipped: r.skipped }, 'journal replayed')
    sweeper.start(config.sweepIntervalMs)
  })
  // Refuse new allocations as soon as closing starts; release once in-flight requests have finished.
  fastify.addHook('preClose', async () => {
    sweeper.stop()
    service.stopAccepting()
  })
  fastify.addHook('onClose', async () => {
    const released = await service.close()
    log.info({ released, kept: config.keepOnShutdown ? service.figures().segments : 0 }, 'segments released at shutdown')
  })
}, { name: 'segments', dependencies: ['config'] })
