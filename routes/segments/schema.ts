import { Type, type Static } from 'typebox'
import { MAX_TTL } from '../../src/segments/lease.js'
import { KEY_PATTERN, NAMESPACE_MAX_LENGTH, NAMESPACE_PATTERN } from '../../src/segments/namespace.js'
import { MAX_NDIM } from '../../src/segments/spec.js'

export const NamespaceSchema = Type.String({
  minLength: 1,
  maxLength: NAMESPACE_MAX_LENGTH,
  pattern: NAMESPACE_PATTERN,
  description: 'Client-chosen, such as `<client_id>/<object_id>`: components of letters, digits and `_.:@=+-`, joined by single slashes.',
  examples: ['client-1/request-42']
})

export const TensorSpecSchema = Type.Object({
  shape: Type.Array(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), {
    maxItems: MAX_NDIM,
    description: `Non-negative integer dimensions, at most ${MAX_NDIM}; zero-size tensors are allowed.`,
    examples: [[1, 480, 640, 3]]
  }),
  dtype: Type.String({
    minLength: 1,
    maxLength: 64,
    description: 'A numpy dtype: bool, int8-int64, uint8-uint64, float16/32/64, complex64/128, by name (`float32`) or array-protocol string (`<f4`, `|u1`, `>i2`).',
    examples: ['uint8']
  })
}, { additionalProperties: false, title: 'TensorSpec' })

export const DescriptorSchema = Type.Object({
  name: Type.String({ description: 'Segment name: attach with `SharedMemory(name=...)`.' }),
  shape: Type.Array(Type.Integer()),
  dtype: Type.String({ description: 'numpy\'s canonical `str(np.dtype(x))`.' }),
  nbytes: Type.Integer({ description: 'Bytes of tensor data; the file holds at least one byte.' })
}, { title: 'Descriptor' })

const ExpiresAtSchema = Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When the lease runs out and the sweeper may reclaim the segment; null: never.' })

export const SegmentInfoSchema = Type.Object({
  ...DescriptorSchema.properties,
  namespace: Type.String(),
  key: Type.String(),
  index: Type.Union([Type.Integer(), Type.Null()], { description: 'Position in a list of tensors, or null.' }),
  size: Type.Integer({ description: 'File size in bytes.' }),
  created_at: Type.String({ format: 'date-time' }),
  ttl_seconds: Type.Integer({ description: 'Lease length used on renewal; 0: no expiry.' }),
  expires_at: ExpiresAtSchema
}, { title: 'SegmentInfo' })

export const SegmentStatusSchema = Type.Object({
  ...SegmentInfoSchema.properties,
  present: Type.Boolean({ description: 'Whether the file is still on /dev/shm under this name (and is still the one created).' })
}, { title: 'SegmentStatus' })

export const TtlSchema = Type.Integer({ minimum: 0, maximum: MAX_TTL, description: 'Lease in seconds; 0 means no expiry. Default: TENSORSHM_DEFAULT_TTL.', examples: [600] })

export const ShareSchema = Type.Object({
  group: Type.Integer({ minimum: 0, maximum: 4294967294, description: 'A gid the calling process belongs to (its primary or a supplementary group, as the kernel reports them).', examples: [1001] }),
  access: Type.Optional(Type.Union([Type.Literal('read'), Type.Literal('read-write')], { default: 'read', description: '`read` (the default): mode 0640; `read-write`: mode 0660.' }))
}, { additionalProperties: false, title: 'Share', description: 'Unix-socket callers only: the segments go to the caller\'s uid and this group instead of mode 0600.' })

export const CreateSegmentsBodySchema = Type.Object({
  namespace: NamespaceSchema,
  ttl_seconds: Type.Optional(TtlSchema),
  release_on_exit: Type.Optional(Type.Boolean({ default: false, description: 'Unix-socket callers only: release the namespace when the calling process exits (watched through a pidfd, and across restarts of the service).' })),
  share: Type.Optional(ShareSchema),
  tensors: Type.Record(Type.String({ pattern: KEY_PATTERN }), Type.Union([TensorSpecSchema, Type.Array(TensorSpecSchema, { minItems: 1, maxItems: 4096 })]), {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1024,
    description: `Keys (${KEY_PATTERN}) to a TensorSpec or a list of them.`,
    examples: [{ images: [{ shape: [1, 480, 640, 3], dtype: 'uint8' }], mask: { shape: [480, 640], dtype: 'bool' } }]
  })
}, { additionalProperties: false })

export const CreateSegmentsReplySchema = Type.Object({
  namespace: Type.String(),
  expires_at: ExpiresAtSchema,
  segments: Type.Record(Type.String(), Type.Union([DescriptorSchema, Type.Array(DescriptorSchema)]))
})

export const NamespaceQuerySchema = Type.Object({ namespace: NamespaceSchema }, { additionalProperties: false })
export const OptionalNamespaceQuerySchema = Type.Object({ namespace: Type.Optional(NamespaceSchema) }, { additionalProperties: false })
export const NameParamsSchema = Type.Object({ name: Type.String({ minLength: 1, description: 'A segment name.' }) })

export const ListReplySchema = Type.Object({ segments: Type.Array(SegmentInfoSchema) })
export const RenewBodySchema = Type.Object({ namespace: NamespaceSchema, ttl_seconds: Type.Optional(TtlSchema) }, { additionalProperties: false })
export const RenewReplySchema = Type.Object({
  namespace: Type.String(),
  renewed: Type.Integer({ description: 'Segments whose lease was extended (the namespace and its sub-namespaces).' }),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'The earliest new expiry among them; null if none expires.' })
})
export const ReleasedReplySchema = Type.Object({ released: Type.Integer({ description: 'How many segments were released.' }) })

export type CreateSegmentsBody = Static<typeof CreateSegmentsBodySchema>
