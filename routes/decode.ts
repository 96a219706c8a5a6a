import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { Type } from 'typebox'
import { negotiate } from '../src/http/accept.js'
import { JSON_TYPE, NPZ_TYPE, PASSTHROUGH_MEMBER, decode } from '../src/transfer/decoding.js'
import { entriesFromJson, entriesFromPickle } from '../src/codecs/descriptors.js'
import { errors } from '../src/errors.js'
import { errorResponses } from './error-responses.js'

const PICKLE = 'application/x-python-pickle'

const DescriptorDictSchema = Type.Record(Type.String(), Type.Unknown(), {
  description: 'Each key maps to a descriptor `{name, shape, dtype}` (an object with those keys; `nbytes` and other keys are allowed), to a non-empty list of descriptors, or to any other value, passed through unchanged.',
  examples: [{ images: [{ name: 'nos_psm_0123456789abcdef', shape: [1, 480, 640, 3], dtype: 'uint8' }], prompt: 'a cat' }]
})

const TensorSchema = Type.Object({ shape: Type.Array(Type.Integer()), dtype: Type.String(), data: Type.String({ contentEncoding: 'base64', description: 'C-order bytes, base64.' }) }, { title: 'DecodedTensor' })

const decodeRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, segments } = fastify
  fastify.addContentTypeParser(PICKLE, { parseAs: 'buffer', bodyLimit: config.bodyLimit }, (_request, body, done) => { done(null, body) })

  fastify.post('/decode', {
    schema: {
      tags: ['decode'],
      summary: 'Decode a descriptor dict into tensors',
      operationId: 'decode',
      description: `The body is a descriptor dict as JSON, or as a Python pickle (\`${PICKLE}\`, protocols 2-5) whose tensor values are \`nos.common.shm.SharedMemoryNumpyObject\` (NOS's \`SharedMemoryDataDict.encode\`), including NOS's dict of per-key pickles. The pickle reader executes nothing and allows only that class and plain data. Only segments this instance created can be read. The answer follows \`Accept\`: \`${JSON_TYPE}\` (default) gives each tensor as \`{shape, dtype, data}\` and other values as they came (bytes from a pickle as \`{"__bytes__": base64}\`); \`${NPZ_TYPE}\` gives an archive that \`numpy.load\` opens, one member per tensor (\`key\`, list items \`key.0\`, \`key.1\`, ...) and the non-tensor values as UTF-8 JSON in the uint8 member \`${PASSTHROUGH_MEMBER}\` (\`json.loads(z["${PASSTHROUGH_MEMBER}"].tobytes())\`). Both are streamed.`,
      body: DescriptorDictSchema,
      consumes: [JSON_TYPE, PICKLE],
      response: {
        200: {
          description: 'The decoded dict.',
          content: {
            [JSON_TYPE]: { schema: Type.Record(Type.String(), Type.Union([TensorSchema, Type.Array(TensorSchema), Type.Unknown()])) },
            [NPZ_TYPE]: { schema: Type.String({ format: 'binary' }) }
          }
        },
        ...errorResponses('InvalidRequest', 'InvalidJson', 'InvalidDescriptor', 'InvalidPickle', 'InvalidName', 'LimitExceeded', 'SegmentNotFound', 'NotAcceptable', 'SegmentTruncated', 'SegmentGone', 'BodyTooLarge', 'UnsupportedMediaType', 'SpecMismatch', 'PickleRefused', 'Busy')
      }
    },
    // The body schema documents the JSON form; both encodings are checked by the descriptor readers.
    validatorCompiler: () => () => true
  }, async (request, reply) => {
    const type = negotiate(request.headers.accept, [JSON_TYPE, NPZ_TYPE])
    if (type === undefined) throw new errors.NotAcceptable(`Accept: this route produces ${JSON_TYPE} or ${NPZ_TYPE}`)
    const limits = { maxKeys: config.maxDictKeys, maxListLength: config.maxListLength, maxDepth: config.maxDepth, maxBytes: config.bodyLimit, maxDescriptors: config.maxDescriptors }
    const entries = Buffer.isBuffer(request.body) ? entriesFromPickle(request.body, limits) : entriesFromJson(request.body, limits)
    const t0 = performance.now()
    const out = decode(segments, entries, type, request.caller, config.maxDecodeBytes)
    out.body.on('error', (err) => { request.log.warn({ err }, 'decode failed mid-stream') })
    out.body.once('end', () => { fastify.metrics.decoded(out.bytes, (performance.now() - t0) / 1000) })
    reply.type(out.type)
    if (out.length !== undefined) reply.header('content-length', out.length)
    return (reply as FastifyReply).send(out.body)
  })
}

export default decodeRoute
