import fp from 'fastify-plugin'
import bearerAuth from '@fastify/bearer-auth'
import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { createHash } from 'node:crypto'
import { ANONYMOUS, keyCaller, type Caller, type LocalCaller } from '../../segments/caller.js'
import { errors } from '../../errors.js'
import { peerOf } from '../../http/peer.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** An onRequest hook: 401 without a valid key; sets request.caller (anonymous without configured keys). */
    authenticate: onRequestHookHandler
  }
  interface FastifyRequest {
    /** Who is asking: set by `authenticate` on every route that needs to know. */
    caller: Caller
  }
}

/** An id for a key that logs, journals and labels can carry: the key itself never leaves memory. */
export const keyId = (key: string): string => `key-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`

export default fp(async (fastify) => {
  const { apiKeys, adminUids } = fastify.config
  fastify.decorateRequest<Caller | null>('caller', null)

  /** A Unix-socket caller, as the kernel named it; undefined on TCP. Its uid, gid and pid go into the request's log. */
  const local = (request: FastifyRequest): LocalCaller | undefined => {
    const peer = peerOf(request.raw.socket)
    if (peer === undefined) return undefined
    const { uid, gid, pid, groups, pidfd } = peer
    request.log = request.log.child({ peer: { uid, gid, pid } })
    return { kind: 'uid', uid, gid, pid, groups, admin: uid === 0 || adminUids.includes(uid), pidfd }
  }

  // Callback-style hooks: no promise per request where nothing waits.
  if (apiKeys.length === 0) {
    fastify.decorate<onRequestHookHandler>('authenticate', (request, _reply, done) => {
      request.caller = local(request) ?? ANONYMOUS
      done()
    })
    return
  }
  // bearer-auth compares in constant time; its hook is not used, so that failures answer in this API's error format.
  await fastify.register(bearerAuth, { keys: apiKeys, addHook: false, verifyErrorLogLevel: 'debug' })
  const verify = fastify.verifyBearerAuth
  if (verify === undefined) throw new Error('@fastify/bearer-auth did not decorate verifyBearerAuth')
  fastify.decorate<onRequestHookHandler>('authenticate', (request, reply, done) => {
    // On the socket, the kernel's word is enough; a key, when one is sent, is checked and then wins.
    if (request.headers.authorization === undefined) {
      const caller = local(request)
      if (caller !== undefined) { request.caller = caller; done(); return }
    }
    verify(request, reply, (err) => {
      if (err !== undefined) {
        reply.header('www-authenticate', 'Bearer realm="tensorshm"')
        done(new errors.Unauthorized('Authorization: a valid bearer key is required'))
        return
      }
      const token = (request.headers.authorization ?? '').slice('Bearer '.length).trim()
      request.caller = keyCaller(keyId(token))
      done()
    })
  })
}, { name: 'auth', dependencies: ['config'] })
