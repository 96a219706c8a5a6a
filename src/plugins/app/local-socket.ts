import fp from 'fastify-plugin'
import { createServer, type Server } from 'node:http'
import { peerOf, rememberPeer } from '../../http/peer.js'
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
  // One local user must not hold every connection slot: each uid gets a quarter of them at most.
  const perUid = Math.max(1, Math.floor(server.maxConnections / 4))
  const open = new Map<number, number>()
  server.on('clientError', sendClientError)
  server.on('connection', (socket) => {
    try {
      rememberPeer(socket)
    } catch (err) {
      // Without credentials there is nobody to serve: never fall back to an anonymous caller.
      log.warn({ err }, 'could not read the peer credentials of a Unix-socket connection; closing it')
      socket.destroy()
      return
    }
    const uid = peerOf(socket)?.uid ?? -1
    const count = open.get(uid) ?? 0
    if (count >= perUid) {
      log.debug({ uid, open: count }, 'a local user holds its share of the socket\'s connections; closing another')
      socket.destroy()
      return
    }
    open.set(uid, count + 1)
    socket.once('close', () => {
      const left = (open.get(uid) ?? 1) - 1
      if (left === 0) open.delete(uid)
      else open.set(uid, left)
    })
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
