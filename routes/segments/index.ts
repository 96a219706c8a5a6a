import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from '../error-responses.js'
import {
  CreateSegmentsBodySchema, CreateSegmentsReplySchema, ListReplySchema, NameParamsSchema, NamespaceQuerySchema,
  OptionalNamespaceQuerySchema, ReleasedReplySchema, RenewBodySchema, RenewReplySchema, SegmentStatusSchema
} from './schema.js'
import { earliest, toCreateReply, toInfo } from './view.js'

const tags = ['segments']

const segments: FastifyPluginAsyncTypebox = async (fastify) => {
  const { segments: service } = fastify

  fastify.post('/segments', {
    schema: {
      tags,
      summary: 'Create segments for tensor specs',
      operationId: 'createSegments',
      description: 'Creates one POSIX shared-memory segment per TensorSpec, all or nothing: when any fails, none remain.',
      body: CreateSegmentsBodySchema,
      response: { 201: { ...CreateSegmentsReplySchema, description: 'Created: one descriptor per spec, in the same shape of dict.' }, ...errorResponses('InvalidRequest', 'InvalidSpec', 'InvalidJson', 'DuplicateKey', 'BodyTooLarge', 'UnsupportedMediaType', 'NamespaceForbidden', 'LocalCallerRequired', 'GroupForbidden', 'OwnershipUnavailable', 'QuotaExceeded', 'InsufficientStorage', 'ShuttingDown') }
    }
  }, async (request, reply) => {
    const result = await service.create(request.body, request.caller)
    return reply.code(201).send(toCreateReply(result))
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
    service.release(request.params.name, request.caller)
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
