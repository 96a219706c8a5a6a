import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { Type } from 'typebox'
import { errorResponses } from '../error-responses.js'
import {
  CreateSegmentsBodySchema, CreateSegmentsReplySchema, ListReplySchema, NameParamsSchema, NamespaceQuerySchema,
  OptionalNamespaceQuerySchema, ReleasedReplySchema, RenewBodySchema, RenewReplySchema, SegmentStatusSchema
} from './schema.js'
import { earliest, toCreateReply, toInfo, toRegistrationMap } from './view.js'
import { acceptParam, negotiate } from '../../src/http/accept.js'
import { PICKLE_PROTOCOLS, writePickle, type PickleProtocol } from '../../src/codecs/pickle-writer.js'
import { errors } from '../../src/errors.js'

const tags = ['segments']
const stringify = (data: unknown): string => JSON.stringify(data)
const JSON_TYPE = 'application/json'
const PICKLE = 'application/x-python-pickle'

/** The pickle protocol an Accept header asks for (`; protocol=2`..`5`), 5 by default as NOS's cloudpickle writes. */
function pickleProtocol (accept: string | undefined): PickleProtocol {
  const asked = acceptParam(accept, PICKLE, 'protocol')
  if (asked === undefined) return 5
  const protocol = PICKLE_PROTOCOLS.find((p) => String(p) === asked)
  if (protocol === undefined) throw new errors.NotAcceptable(`Accept: protocol=${asked.slice(0, 20)} is not a pickle protocol this service writes (2-5)`)
  return protocol
}

const segments: FastifyPluginAsyncTypebox = async (fastify) => {
  const { segments: service } = fastify

  fastify.post('/segments', {
    schema: {
      tags,
      summary: 'Create segments for tensor specs',
      operationId: 'createSegments',
      description: `Creates one POSIX shared-memory segment per TensorSpec, all or nothing: when any fails, none remain. With \`Accept: ${PICKLE}\` (optionally \`; protocol=2\`..\`5\`, default 5) the answer is what NOS's \`RegisterSystemSharedMemory\` returns, pickled: \`{key: nos.common.shm.SharedMemoryNumpyObject | [...]}\`, each object's state \`{name, shape (a tuple), dtype}\`, so that an unmodified NOS client's \`loads\` attaches to the new segments.`,
      body: CreateSegmentsBodySchema,
      response: {
        201: {
          description: 'Created: one descriptor per spec, in the same shape of dict.',
          content: {
            [JSON_TYPE]: { schema: CreateSegmentsReplySchema },
            [PICKLE]: { schema: Type.String({ format: 'binary', description: 'NOS\'s registration map, pickled.' }) }
          }
        },
        ...errorResponses('InvalidRequest', 'InvalidSpec', 'InvalidJson', 'DuplicateKey', 'BodyTooLarge', 'UnsupportedMediaType', 'NotAcceptable', 'NamespaceForbidden', 'LocalCallerRequired', 'GroupForbidden', 'OwnershipUnavailable', 'QuotaExceeded', 'InsufficientStorage', 'Busy', 'ShuttingDown')
      }
    },
    // The schema documents the reply; view.ts builds it field by field. A compiled serializer would run ajv on every
    // value to choose between a descriptor and a list of them (the schema's anyOf), which costs more than the rest.
    serializerCompiler: () => stringify
  }, async (request, reply) => {
    // Negotiated before anything is created: a 406 must leave /dev/shm as it was.
    const type = negotiate(request.headers.accept, [JSON_TYPE, PICKLE])
    if (type === undefined) throw new errors.NotAcceptable(`Accept: this route produces ${JSON_TYPE} or ${PICKLE}`)
    const protocol = type === PICKLE ? pickleProtocol(request.headers.accept) : 5
    const result = await service.create(request.body, request.caller)
    if (type === JSON_TYPE) return reply.code(201).send(toCreateReply(result))
    return (reply as FastifyReply).code(201).type(PICKLE).send(writePickle(toRegistrationMap(result), protocol))
  })

  fastify.get('/segments', {
    schema: {
      tags,
      summary: 'List segments',
      operationId: 'listSegments',
      description: 'Lists the segments of a namespace and of its sub-namespaces (`a` covers `a/x`, never `ab`), or all of them.',
      querystring: OptionalNamespaceQuerySchema,
      response: { 200: { ...ListReplySchema, description: 'The caller\'s segments in the namespace and below it.' }, ...errorResponses('InvalidRequest') }
    }
  }, async (request) => ({ segments: service.list(request.query.namespace, request.caller).map(toInfo) }))

  fastify.get('/segments/:name', {
    schema: {
      tags,
      summary: 'Describe one segment',
      operationId: 'getSegment',
      description: 'The descriptor, its namespace and key, when it was created, and whether its file is still on /dev/shm.',
      params: NameParamsSchema,
      response: { 200: { ...SegmentStatusSchema, description: 'The segment.' }, ...errorResponses('InvalidRequest', 'InvalidName', 'SegmentNotFound') }
    }
  }, async (request) => {
    const record = service.find(request.params.name, request.caller)
    return { ...toInfo(record), present: service.presence(record) === 'present' }
  })

  fastify.delete('/segments/:name', {
    schema: {
      tags,
      summary: 'Release one segment',
      operationId: 'releaseSegment',
      description: 'Its name disappears from /dev/shm at once; the file is unlinked, or kept under another name for reuse by the same client (TENSORSHM_POOL_BYTES).',
      params: NameParamsSchema,
      response: { 204: Type.Null({ description: 'Released.' }), ...errorResponses('InvalidRequest', 'InvalidName', 'SegmentNotFound') }
    }
  }, async (request, reply) => {
    await service.release(request.params.name, request.caller)
    return reply.code(204).send(null)
  })

  fastify.delete('/segments', {
    schema: {
      tags,
      summary: 'Release a namespace',
      operationId: 'releaseNamespace',
      description: 'Releases every segment of the namespace and of its sub-namespaces, on `/` boundaries.',
      querystring: NamespaceQuerySchema,
      response: { 200: { ...ReleasedReplySchema, description: 'How many were released.' }, ...errorResponses('InvalidRequest') }
    }
  }, async (request) => ({ released: service.releaseNamespace(request.query.namespace, request.caller) }))

  fastify.post('/renew', {
    schema: {
      tags,
      summary: 'Renew a namespace\'s leases',
      operationId: 'renew',
      description: 'Extends the lease of every segment in the namespace and its sub-namespaces: by `ttl_seconds` if given (which then becomes their TTL), else by each segment\'s own TTL.',
      body: RenewBodySchema,
      response: { 200: { ...RenewReplySchema, description: 'Renewed.' }, ...errorResponses('InvalidRequest', 'InvalidJson', 'BodyTooLarge', 'UnsupportedMediaType') }
    }
  }, async (request) => {
    const renewed = service.renew(request.body.namespace, request.body.ttl_seconds, request.caller)
    return { namespace: request.body.namespace, renewed: renewed.length, expires_at: earliest(renewed) }
  })
}

export default segments
