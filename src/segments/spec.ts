import { parseDtype, type Dtype } from '../codecs/dtype.js'
import { errors } from '../errors.js'

/** numpy 1.x allows 32 dimensions (2.x allows 64): the lower bound keeps every spec attachable from either. */
export const MAX_NDIM = 32
/** numpy refuses arrays whose byte size (of non-zero dims) overflows intp. */
const INTP_MAX = 2n ** 63n - 1n

export interface TensorSpecInput { shape: number[], dtype: string }

export interface Spec {
  shape: number[]
  dtype: Dtype
  nbytes: number
}

/**
 * Checks what the JSON schema cannot: the dtype, the rank, and the byte size computed without overflow.
 * `field` names the spec in messages, e.g. `tensors.images[2]`.
 */
export function checkSpec (input: TensorSpecInput, field: string, maxBytes: number): Spec {
  const dtype = parseDtype(input.dtype)
  if (dtype === undefined) {
    throw new errors.InvalidSpec(`${field}.dtype: "${truncate(input.dtype)}" is not a supported dtype (bool, int8-int64, uint8-uint64, float16-float64, complex64, complex128, or their array-protocol strings such as "<f4")`)
  }
  const { shape } = input
  if (shape.length > MAX_NDIM) throw new errors.InvalidSpec(`${field}.shape: ${shape.length} dimensions, at most ${MAX_NDIM} are allowed`)
  // In doubles first: a product of factors >= 1 that ends at or below 2^53 was exact all the way.
  let bytes = dtype.itemsize
  let empty = false
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) { bytes = Infinity; break }
    if (dim === 0) empty = true
    else bytes *= dim
  }
  if (bytes <= Number.MAX_SAFE_INTEGER) {
    const nbytes = empty ? 0 : bytes
    if (nbytes > maxBytes) throw new errors.InvalidSpec(`${field}.shape: ${nbytes} bytes is over the limit of ${maxBytes} bytes per segment (TENSORSHM_MAX_SEGMENT_BYTES)`)
    return { shape: [...shape], dtype, nbytes }
  }
  return checkLarge(shape, dtype, field, maxBytes)
}

/** The same, exactly, in BigInt: for what would not fit in a double, or a dimension that is not an integer. */
function checkLarge (shape: number[], dtype: Dtype, field: string, maxBytes: number): Spec {
  let nonzero = BigInt(dtype.itemsize)
  let zero = false
  for (const [i, dim] of shape.entries()) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new errors.InvalidSpec(`${field}.shape[${i}]: ${String(dim)} is not a non-negative integer`)
    if (dim === 0) zero = true
    else nonzero *= BigInt(dim)
    if (nonzero > INTP_MAX) throw new errors.InvalidSpec(`${field}.shape: the tensor would hold more than 2^63-1 bytes, which numpy cannot index`)
  }
  const nbytes = zero ? 0n : nonzero
  if (nbytes > BigInt(maxBytes)) {
    throw new errors.InvalidSpec(`${field}.shape: ${nbytes} bytes is over the limit of ${maxBytes} bytes per segment (TENSORSHM_MAX_SEGMENT_BYTES)`)
  }
  return { shape: [...shape], dtype, nbytes: Number(nbytes) }
}

function truncate (text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}...` : text
}

/** What a client says a segment holds: a descriptor it hands back, or the header of an npy it uploads. */
export interface Claim { dtype: string, shape: number[], nbytes?: number | undefined, fortranOrder?: boolean }

/** 422 naming the field when a claim disagrees with the spec the segment was registered with. */
export function checkClaim (spec: Spec, claim: Claim, field: string): void {
  const dtype = parseDtype(claim.dtype)
  if (dtype?.name !== spec.dtype.name) throw new errors.SpecMismatch(`${field}.dtype: "${claim.dtype}" is not the segment's ${spec.dtype.name}`)
  if (claim.fortranOrder === true) throw new errors.SpecMismatch(`${field}.fortran_order: True, but the segment holds C order`)
  if (claim.shape.join(',') !== spec.shape.join(',')) throw new errors.SpecMismatch(`${field}.shape: (${claim.shape.join(', ')}) is not the segment's (${spec.shape.join(', ')})`)
  if (claim.nbytes !== undefined && claim.nbytes !== spec.nbytes) throw new errors.SpecMismatch(`${field}.nbytes: ${claim.nbytes} is not the segment's ${spec.nbytes}`)
}
