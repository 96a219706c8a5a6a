import fp from 'fastify-plugin'
import sjson from 'secure-json-parse'
import { errors } from '../../errors.js'

const MAX_DETAIL = 160

/**
 * JSON bodies, read as Fastify's own parser reads them (secure-json-parse: a key that would set a prototype is
 * refused), but answered with what is wrong. Fastify's parser gives every failure the same sentence, so a client
 * sending a tensor key `__proto__` heard that its valid JSON was not JSON.
 */
export default fp(async (fastify) => {
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string
    if (text.length === 0) { done(new errors.InvalidJson('body: a JSON body is required'), undefined); return }
    let value: unknown
    try {
      // `safe`: null instead of a throw for a poisoning key, so that it is told apart from a syntax error.
      value = sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error', safe: true })
    } catch (err) {
      const detail = (err as Error).message
      done(new errors.InvalidJson(`body: not valid JSON (${detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}...` : detail})`), undefined)
      return
    }
    if (value === null && text.trim() !== 'null') {
      done(new errors.InvalidJson('body: a key "__proto__", or a key "prototype" inside a key "constructor", is refused in JSON bodies: it would set an object\'s prototype (so no tensor can be keyed "__proto__")'), undefined)
      return
    }
    done(null, value)
  })
}, { name: 'json-body' })
