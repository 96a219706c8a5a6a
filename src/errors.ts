import createError, { type FastifyError } from '@fastify/error'
import { ShortReadError } from '../native/io.js'
import { SysError } from '../native/sys-error.js'
import { CodecError } from './codecs/codec-error.js'

/** Every error the API answers with. Codes are stable: clients match on them. */
const table = {
  InvalidRequest: ['TSHM_INVALID_REQUEST', 400, 'The request does not match the schema; the message names the field.'],
  InvalidJson: ['TSHM_INVALID_JSON', 400, 'The body is not valid JSON.'],
  InvalidSpec: ['TSHM_INVALID_SPEC', 400, 'A tensor spec has an unsupported dtype, too many dimensions or too many bytes.'],
  InvalidName: ['TSHM_INVALID_NAME', 400, 'A segment name is malformed: another prefix, a slash, a NUL byte, or too long.'],
  InvalidDescriptor: ['TSHM_INVALID_DESCRIPTOR', 400, 'A descriptor in a descriptor dict is malformed.'],
  InvalidPickle: ['TSHM_INVALID_PICKLE', 400, 'The pickle is truncated, malformed or over a limit.'],
  InvalidNpy: ['TSHM_INVALID_NPY', 400, 'The .npy header is malformed.'],
  LengthMismatch: ['TSHM_LENGTH_MISMATCH', 400, 'Content-Length does not match the segment\'s size.'],
  LimitExceeded: ['TSHM_LIMIT_EXCEEDED', 400, 'A descriptor dict has too many keys, too long a list, or too deep a nesting, or its answer would carry more than TENSORSHM_MAX_DECODE_BYTES.'],
  Unauthorized: ['TSHM_UNAUTHORIZED', 401, 'A valid `Authorization: Bearer <key>` header is required.'],
  NamespaceForbidden: ['TSHM_NAMESPACE_FORBIDDEN', 403, 'The namespace belongs to another API key (or, on the Unix socket, another user).'],
  LocalCallerRequired: ['TSHM_LOCAL_CALLER_REQUIRED', 400, '`release_on_exit` and `share` need a caller on the Unix socket (TENSORSHM_SOCKET) whose process the service can see; the message names the field.'],
  GroupForbidden: ['TSHM_GROUP_FORBIDDEN', 403, '`share.group` is not a group the calling process belongs to (as the kernel reports it).'],
  OwnershipUnavailable: ['TSHM_OWNERSHIP_UNAVAILABLE', 403, 'The service cannot give segments to the calling uid: it runs without CAP_CHOWN, so only its own uid may create over the Unix socket.'],
  SegmentNotFound: ['TSHM_SEGMENT_NOT_FOUND', 404, 'No segment of this instance has that name.'],
  RouteNotFound: ['TSHM_ROUTE_NOT_FOUND', 404, 'No such route.'],
  NotAcceptable: ['TSHM_NOT_ACCEPTABLE', 406, 'The Accept header asks for no media type this route produces.'],
  DuplicateKey: ['TSHM_DUPLICATE_KEY', 409, 'The key is already registered in the namespace.'],
  SegmentTruncated: ['TSHM_SEGMENT_TRUNCATED', 409, 'The segment\'s file is shorter than its tensor: someone truncated it.'],
  SegmentGone: ['TSHM_SEGMENT_GONE', 410, 'The segment\'s file was unlinked (or replaced) behind the service\'s back; the registry has forgotten it.'],
  RequestTimeout: ['TSHM_REQUEST_TIMEOUT', 408, 'The request did not arrive whole in time (TENSORSHM_HEADERS_TIMEOUT, TENSORSHM_REQUEST_TIMEOUT); the connection is closed.'],
  LengthRequired: ['TSHM_LENGTH_REQUIRED', 411, 'Tensor uploads need a Content-Length.'],
  BodyTooLarge: ['TSHM_BODY_TOO_LARGE', 413, 'The request body is larger than allowed.'],
  UnsupportedMediaType: ['TSHM_UNSUPPORTED_MEDIA_TYPE', 415, 'The Content-Type is not one this route reads.'],
  HeadersTooLarge: ['TSHM_HEADERS_TOO_LARGE', 431, 'The request line or headers are larger than the HTTP parser accepts; the connection is closed.'],
  SpecMismatch: ['TSHM_SPEC_MISMATCH', 422, 'A shape or dtype disagrees with the segment\'s registered spec.'],
  PickleRefused: ['TSHM_PICKLE_REFUSED', 422, 'The pickle names a global other than nos.common.shm.SharedMemoryNumpyObject and plain data.'],
  QuotaExceeded: ['TSHM_QUOTA_EXCEEDED', 507, 'The request would pass TENSORSHM_MAX_TOTAL_BYTES or the per-namespace segment limit.'],
  InsufficientStorage: ['TSHM_INSUFFICIENT_STORAGE', 507, '/dev/shm cannot hold the requested segments.'],
  RateLimited: ['TSHM_RATE_LIMITED', 429, 'Too many requests for this key; retry after the Retry-After seconds.'],
  Internal: ['TSHM_INTERNAL', 500, 'An unexpected failure; the log has the details.'],
  ShuttingDown: ['TSHM_SHUTTING_DOWN', 503, 'The service is shutting down.'],
  Busy: ['TSHM_BUSY', 503, 'Out of a bounded resource right now: segment files open for transfers (TENSORSHM_MAX_OPEN_SEGMENTS), processes watched for release_on_exit (TENSORSHM_MAX_BOUND_PROCESSES) or file descriptors; retry after the Retry-After seconds.'],
  Overloaded: ['TSHM_OVERLOADED', 503, 'The service is shedding load; retry after the Retry-After seconds.']
} as const

type Table = typeof table
export type ErrorName = keyof Table
export type ErrorCode = Table[ErrorName][0]

function build<N extends ErrorName> (name: N) {
  const [code, status] = table[name]
  // The message is always supplied by the thrower; stack traces are never sent, so skip capturing them.
  return createError<Table[N][0], Table[N][1], [string]>(code, '%s', status, Error, false)
}

type Errors = { [N in ErrorName]: ReturnType<typeof build<N>> }
export const errors = Object.fromEntries((Object.keys(table) as ErrorName[]).map((n) => [n, build(n)])) as Errors

export const errorNames = Object.keys(table) as ErrorName[]

export interface ErrorInfo { code: string, statusCode: number, description: string }

export const errorInfo = (name: ErrorName): ErrorInfo => {
  const [code, statusCode, description] = table[name]
  return { code, statusCode, description }
}

// Fastify's own failures, renamed into this service's codes so that clients see one set.
const fromFastify: Record<string, (message: string) => FastifyError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new errors.BodyTooLarge('body: the request body is larger than allowed'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => new errors.UnsupportedMediaType('Content-Type: this route does not read that media type'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new errors.InvalidJson('body: a JSON body is required'),
  FST_ERR_CTP_INVALID_JSON_BODY: (message) => new errors.InvalidJson(`body: ${message}`),
  FST_ERR_BAD_URL: () => new errors.InvalidRequest('url: a path component is not valid percent-encoded UTF-8'),
  FST_ERR_MAX_PARAM_LENGTH: () => new errors.InvalidName('name: the segment name is far longer than any name this service makes')
}

/** What Node's HTTP parser refuses before any route sees the request, by its error code; anything else is a 400. */
const fromParser: Record<string, () => FastifyError> = {
  ERR_HTTP_REQUEST_TIMEOUT: () => new errors.RequestTimeout('request: it did not arrive whole in time'),
  HPE_HEADER_OVERFLOW: () => new errors.HeadersTooLarge('headers: larger than the HTTP parser accepts')
}

/** A malformed or late request, answered before routing (the socket is closed after it). */
export const clientError = (err: NodeJS.ErrnoException): FastifyError =>
  fromParser[err.code ?? '']?.() ?? new errors.InvalidRequest(`request: not valid HTTP/1.1 (${err.code ?? 'parse error'})`)

/** libc failures a request can meet, by errno. */
const fromErrno: Record<string, () => FastifyError> = {
  ENOSPC: () => new errors.InsufficientStorage('tensors: /dev/shm has no room for the requested segments'),
  EMFILE: () => new errors.Busy('the service has no file descriptor free right now; retry shortly'),
  ENFILE: () => new errors.Busy('the system has no file descriptor free right now; retry shortly')
}

/**
 * Whatever was thrown, as the error a client gets: this service's own errors as they are; Fastify's, the codecs',
 * libc's (by errno) and a file cut short under a read, renamed into the table above. Anything else stays what it
 * is, and is answered as TSHM_INTERNAL.
 */
export function translate (err: unknown): FastifyError {
  if (err instanceof CodecError) return new errors[err.kind](err.message)
  if (err instanceof ShortReadError) return new errors.SegmentTruncated(`name: ${err.message}; someone truncated the segment`)
  const e = (err instanceof Error ? err : new Error(String(err))) as FastifyError
  // Node's own fs calls (the journal's writes) fail with the same errno names as SysError.
  const byErrno = typeof e.code === 'string' ? fromErrno[e.code] : undefined
  if (byErrno !== undefined && (err instanceof SysError || typeof (err as NodeJS.ErrnoException).syscall === 'string')) return byErrno()
  if (e.code?.startsWith('TSHM_') === true) return e
  const byFastify = typeof e.code === 'string' ? fromFastify[e.code] : undefined
  if (byFastify !== undefined) return byFastify(e.message)
  if (err instanceof SyntaxError && e.statusCode === 400) return new errors.InvalidJson(`body: ${e.message}`)
  const status = e.statusCode ?? 500
  if (status >= 400 && status < 500) return Object.assign(new errors.InvalidRequest(e.message), { statusCode: status })
  return e
}
