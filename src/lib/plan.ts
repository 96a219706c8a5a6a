import { capacity } from '../../native/shm.js'
import type { Config } from './config.js'
import { errors } from './errors.js'
import type { Registry } from './registry.js'
import { checkSpec, type Spec, type TensorSpecInput } from './spec.js'

export interface CreateRequest {
  namespace: string
  tensors: Record<string, TensorSpecInput | TensorSpecInput[]>
  ttl_seconds?: number
}

export interface Planned { key: string, index: number | null, field: string, spec: Spec, size: number }

export type QuotaReason = 'total_bytes' | 'namespace_segments' | 'capacity'

export class QuotaError extends Error {
  constructor (readonly reason: QuotaReason, readonly error: Error) { super(error.message) }
}

/** Every spec checked and sized before anything is created: a request that cannot succeed touches nothing. */
export function plan (request: CreateRequest, maxSegmentBytes: number): Planned[] {
  const out: Planned[] = []
  const add = (key: string, index: number | null, input: TensorSpecInput) => {
    const field = index === null ? `tensors.${key}` : `tensors.${key}[${index}]`
    const spec = checkSpec(input, field, maxSegmentBytes)
    // An empty file cannot be mapped, so a zero-size tensor still gets one byte.
    out.push({ key, index, field, spec, size: Math.max(spec.nbytes, 1) })
  }
  for (const [key, value] of Object.entries(request.tensors)) {
    if (Array.isArray(value)) value.forEach((spec, i) => add(key, i, spec))
    else add(key, null, value)
  }
  return out
}

/** Quotas and /dev/shm's free space, with what other requests are creating right now counted in. */
export function checkQuota (planned: Planned[], namespace: string, registry: Registry, config: Config, pendingBytes: number): void {
  const bytes = planned.reduce((n, p) => n + p.size, 0)
  const inNamespace = registry.countIn(namespace)
  if (inNamespace + planned.length > config.maxSegmentsPerNamespace) {
    throw new QuotaError('namespace_segments', new errors.QuotaExceeded(
      `tensors: namespace "${namespace}" holds ${inNamespace} segments; ${planned.length} more would pass the limit of ${config.maxSegmentsPerNamespace} (TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE)`))
  }
  const used = registry.bytes + pendingBytes
  if (config.maxTotalBytes > 0 && used + bytes > config.maxTotalBytes) {
    throw new QuotaError('total_bytes', new errors.QuotaExceeded(
      `tensors: ${bytes} bytes more would bring this instance to ${used + bytes} bytes, over the limit of ${config.maxTotalBytes} (TENSORSHM_MAX_TOTAL_BYTES)`))
  }
  // tmpfs takes a sparse file of any size; refuse here what could only end as SIGBUS in a client later.
  const { free } = capacity()
  if (bytes > free - pendingBytes) {
    throw new QuotaError('capacity', new errors.InsufficientStorage(`tensors: ${bytes} bytes do not fit in the ${Math.max(free - pendingBytes, 0)} bytes free on /dev/shm`))
  }
}
