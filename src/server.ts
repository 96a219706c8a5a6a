import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig } from './lib/config.js'

let config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`tensorshm: invalid configuration: ${err.message}\n`)
  process.exit(2)
}

const server = Fastify(serverOptions(config))
try {
  await server.register(app, { config })
} catch (err) {
  server.log.fatal({ err }, 'could not start')
  process.exit(1)
}

// `npm start` forwards the signal it got to the service, which then sees it twice; Ctrl-C does the same. The second
// one, or the end of the grace period, exits at once, so the releases are done synchronously first.
const now = (why: string) => () => {
  server.log.warn({ why }, 'exiting before the graceful close finished; releasing synchronously')
  server.segments.shutdownNow()
}
closeWithGrace({ delay: 30_000, onSecondSignal: now('second signal'), onTimeout: now('grace period over') }, async ({ signal, err }) => {
  if (err !== undefined) server.log.error({ err }, 'closing after an uncaught error')
  else server.log.info({ signal }, 'closing')
  // At once, not after Fastify's close has begun: `npm start` reports the exit a few ms after the signal.
  server.segments.beginShutdown()
  await server.close()
})

try {
  await server.listen({ host: config.host, port: config.port })
} catch (err) {
  server.log.fatal({ err }, 'could not start')
  process.exit(1)
}
