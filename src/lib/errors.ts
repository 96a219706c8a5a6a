import createError from '@fastify/error'

/** Every error the API answers with. Codes are stable: clients match on them. */
const table = {
  InvalidRequest: ['TSHM_INVALID_REQUEST', 400, 'The request does not match the schema; the message names the field.'],
  InvalidJson: ['TSHM_INVALID_JSON', 400, 'The body is not valid JSON.'],
  InvalidSpec: ['TSHM_INVALID_SPEC', 400, 'A tensor spec has an unsupported dtype, too many dimensions or too many bytes.'],
  InvalidName: ['TSHM_INVALID_NAME', 400, 'A segment name is malformed: another prefix, a slash, a NUL byte, or too long.'],
  SegmentNotFound: ['TSHM_SEGMENT_NOT_FOUND', 404, 'No segment of this instance has that name.'],
  RouteNotFound: ['TSHM_ROUTE_NOT_FOUND', 404, 'No such route.'],
  DuplicateKey: ['TSHM_DUPLICATE_KEY', 409, 'The key is already registered in the namespace.'],
  BodyTooLarge: ['TSHM_BODY_TOO_LARGE', 413, 'The request body is larger than allowed.'],
  UnsupportedMediaType: ['TSHM_UNSUPPORTED_MEDIA_TYPE', 415, 'The Content-Type is not one this route reads.'],
  InsufficientStorage: ['TSHM_INSUFFICIENT_STORAGE', 507, '/dev/shm cannot hold the requested segments.'],
  Internal: ['TSHM_INTERNAL', 500, 'An unexpected failure; the log has the details.'],
  ShuttingDown: ['TSHM_SHUTTING_DOWN', 503, 'The service is shutting down.']
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

export interface ErrorInfo { code: string, statusCode: number, description: string }

export const errorInfo = (name: ErrorName): ErrorInfo => {
  const [code, statusCode, description] = table[name]
  return { code, statusCode, description }
}

export const allErrors = (): ErrorInfo[] => (Object.keys(table) as ErrorName[]).map(errorInfo)
