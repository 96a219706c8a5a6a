import fp from 'fastify-plugin'
import { createServer, type Server } from 'node:http'
import { rememberPeer } from '../../http/peer.js'
import { timeouts } from '../../http/timeouts.js'
import { sendClientError } from './error-handler.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The Unix socket's HTTP server (TENSORSHM_SOCKET), routed by this instance; server.ts makes it listen. */
    localServer: Server | undefined
  }
}

/**
 * A second HTTP server for the Unix socket, handing every request to the same routes, with the same limits as
 * the TCP one. Each connection's peer credentials are read once, when it is accepted, and kept with it.
 */
export default fp(async (fastify) => {
  const { config, log } = fastify
  if (config.socket === undefined) { fastify.decorate('localServer', undefined); return }
  const { connectionTimeout, keepAliveTimeout, requestTimeout, http } = timeouts(config)
  const server = createServer({ ...http, keepAliveTimeout, requestTimeout }, (req, res) => { fastify.routing(req, res) })
  server.setTimeout(connectionTimeout)
  server.maxConnections = fastify.server.maxConnections
  server.on('clientError', sendClientError)
  server.on('connection', (socket) => {
    try {
      rememberPeer(socket)
    } catch (err) {
      // Without credentials there is nobody to serve: never fall back to an anonymous caller.
      log.warn({ err }, 'could not read the peer credentials of a Unix-socket connection; closing it')
      socket.destroy()
    }
  })
  fastify.decorate('localServer', server)
  // Like the TCP server's close: no new connections, idle ones go, in-flight requests finish first.
  fastify.addHook('preClose', async () => {
    if (!server.listening) return
    const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    server.closeIdleConnections()
    await closed
  })
}, { name: 'local-socket', dependencies: ['config', 'errors'] })
