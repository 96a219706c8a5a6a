import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { Type } from 'typebox'
import { negotiate } from '../../src/http/accept.js'
import { errors } from '../../src/errors.js'
import { NPY, RAW, readTensor, writeTensor } from '../../src/transfer/tensors.js'
import { errorResponses } from '../error-responses.js'
import { NameParamsSchema } from './schema.js'

const tags = ['data']
const binary = (description: string) => ({ description, content: { [NPY]: { schema: Type.String({ format: 'binary' }) }, [RAW]: { schema: Type.String({ format: 'binary' }) } } })

const data: FastifyPluginAsyncTypebox = async (fastify) => {
  const { segments: service } = fastify
  // Uploads are streamed into the segment, never parsed or buffered: the handler gets the raw request, and
  // nothing else (JSON included) is read here.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser([RAW, NPY], (_request, payload: IncomingMessage, done) => { done(null, payload) })

  fastify.get('/segments/:name/data', {
    schema: {
      tags,
      summary: 'Read a tensor',
      operationId: 'readTensor',
      description: 'Streams the tensor in constant memory: `application/x-npy` (default; `numpy.load` opens it) or `application/octet-stream` (C-order bytes; shape and dtype in `X-Tensor-Shape` and `X-Tensor-Dtype`).',
      params: NameParamsSchema,
      response: {
        200: binary('The tensor.'),
        ...errorResponses('InvalidRequest', 'InvalidName', 'SegmentNotFound', 'NotAcceptable', 'SegmentTruncated', 'SegmentGone', 'Busy')
      }
    }
  }, async (request, reply) => {
    const record = service.find(request.params.name, request.caller)
    const type = negotiate(request.headers.accept, [NPY, RAW])
    if (type === undefined) throw new errors.NotAcceptable(`Accept: this route produces ${NPY} or ${RAW}`)
    const t0 = performance.now()
    const out = readTensor(service, record, type)
    out.body.on('error', (err) => { request.log.warn({ err, segment: record.name }, 'tensor read failed mid-stream') })
    out.body.once('end', () => { fastify.metrics.transferred('read', record.nbytes, (performance.now() - t0) / 1000) })
    // Streams are untyped in the schema-derived reply type; the OpenAPI entry documents the body.
    return (reply as FastifyReply)
      .type(out.type)
      .header('content-length', out.length)
      .header('x-tensor-shape', record.shape.join(','))
      .header('x-tensor-dtype', record.dtype.name)
      .send(out.body)
  })

  fastify.put('/segments/:name/data', {
    schema: {
      tags,
      summary: 'Write a tensor',
      operationId: 'writeTensor',
      description: 'Writes the whole tensor: `application/octet-stream` with exactly nbytes, or `application/x-npy` whose header matches the registered shape and dtype in C order. A Content-Length or header that does not match is refused before any byte is written.',
      params: NameParamsSchema,
      consumes: [RAW, NPY],
      response: {
        204: Type.Null({ description: 'Written.' }),
        ...errorResponses('InvalidRequest', 'InvalidName', 'SegmentNotFound', 'LengthRequired', 'LengthMismatch', 'InvalidNpy', 'SpecMismatch', 'UnsupportedMediaType', 'SegmentTruncated', 'SegmentGone', 'Busy')
      }
    }
  }, async (request, reply) => {
    // Checked first, body or not, so that the answer does not depend on whether a parser ran.
    const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== RAW && type !== NPY) throw new errors.UnsupportedMediaType(`Content-Type: uploads are ${RAW} or ${NPY}`)
    const record = service.find(request.params.name, request.caller)
    const lengthHeader = request.headers['content-length']
    if (lengthHeader === undefined) throw new errors.LengthRequired('Content-Length: tensor uploads need one')
    const t0 = performance.now()
    const written = await writeTensor(service, record, type, Number(lengthHeader), request.body as AsyncIterable<Buffer>)
    fastify.metrics.transferred('write', written, (performance.now() - t0) / 1000)
    return reply.code(204).send(null)
  })
}

export default data
