import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { listenOnSocket, prepareSocketPath, SocketPathError } from './http/socket-path.js'
import { logDestination } from './log-destination.js'

let config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`tensorshm: invalid configuration: ${err.message}\n`)
  process.exit(2)
}

const uid = process.geteuid?.() ?? 0
const refuseSocket = (err: unknown): never => {
  if (!(err instanceof SocketPathError)) throw err
  process.stderr.write(`tensorshm: TENSORSHM_SOCKET: ${err.message}\n`)
  process.exit(1)
}

// Before anything else starts: a socket path that cannot be used stops the start with nothing done.
let socketPath: { path: string, replaced: boolean } | undefined
if (config.socket !== undefined) socketPath = await prepareSocketPath(config.socket, uid).catch(refuseSocket)

const logs = logDestination()
const server = Fastify(serverOptions(config, logs))
try {
  await server.register(app, { config })
  await server.ready()
} catch (err) {
  server.log.fatal({ err }, 'could not start')
  logs.flushSync()
  process.exit(1)
}

// `npm start` forwards the signal it got to the service, which then sees it twice; Ctrl-C does the same. The second
// one, or the end of the grace period, exits at once, so the releases are done synchronously first.
const now = (why: string) => () => {
  server.log.warn({ why }, 'exiting before the graceful close finished; releasing synchronously')
  server.segments.closeNow()
}
closeWithGrace({ delay: 30_000, onSecondSignal: now('second signal'), onTimeout: now('grace period over') }, async ({ signal, err }) => {
  if (err !== undefined) {
    // Crash-only: a bug must not take every tenant's segments with it. They stay, with the journal, for the next start.
    server.log.fatal({ err }, 'uncaught error: exiting without releasing segments; a restart recovers them from the journal')
    logs.flushSync()
    process.exit(70)
  }
  server.log.info({ signal }, 'closing')
  // At once, not after Fastify's close has begun: `npm start` reports the exit a few ms after the signal.
  server.segments.stopAccepting()
  // Closes the Unix socket's server too (its preClose hook); Node removes the socket file.
  await server.close()
})

if (socketPath !== undefined && config.socket !== undefined && server.localServer !== undefined) {
  await listenOnSocket(server.localServer, socketPath.path, config.socket, uid).catch(refuseSocket)
  server.log.info({ socket: socketPath.path, mode: config.socket.mode.toString(8), replacedStale: socketPath.replaced }, 'listening on the Unix socket')
}
if (config.tcp) {
  try {
    await server.listen({ host: config.host, port: config.port })
  } catch (err) {
    server.log.fatal({ err }, 'could not start')
    logs.flushSync()
    process.exit(1)
  }
}
