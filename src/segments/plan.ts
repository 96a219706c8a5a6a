import { errors } from '../errors.js'
import type { ShareRequest } from './access.js'
import { checkSpec, type Spec, type TensorSpecInput } from './spec.js'

export interface CreateRequest {
  namespace: string
  tensors: Record<string, TensorSpecInput | TensorSpecInput[]>
  ttl_seconds?: number
  /** Release the namespace when the calling process exits (Unix-socket callers only). */
  release_on_exit?: boolean
  /** Let one of the caller's groups map the segments (Unix-socket callers only). */
  share?: ShareRequest
}

export interface Planned { key: string, index: number | null, field: string, spec: Spec, size: number }

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

export type QuotaReason = 'total_bytes' | 'segments' | 'namespace_segments' | 'capacity'

export interface Limits { maxTotalBytes: number, maxSegments: number, maxSegmentsPerNamespace: number }

/** What this instance holds on /dev/shm right now, whatever state its files are in. */
export interface Usage {
  segments: number
  /** Pages of live segments, creations in flight, kept files, and released files still open or being unlinked. */
  pages: number
  /** Segments in the namespace the request creates in. */
  inNamespace: number
  /** Free bytes on /dev/shm, less what creations in flight will take. */
  free: number
}

/** Why a create cannot go ahead, or undefined when it can. Counts are files, sizes are pages, not st_size. */
export function overQuota (count: number, pages: number, namespace: string, usage: Usage, limits: Limits): { reason: QuotaReason, error: Error } | undefined {
  if (usage.inNamespace + count > limits.maxSegmentsPerNamespace) {
    return { reason: 'namespace_segments', error: new errors.QuotaExceeded(`tensors: namespace "${namespace}" holds ${usage.inNamespace} segments; ${count} more would pass the limit of ${limits.maxSegmentsPerNamespace} (TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE)`) }
  }
  if (usage.segments + count > limits.maxSegments) {
    return { reason: 'segments', error: new errors.QuotaExceeded(`tensors: this instance holds ${usage.segments} segments; ${count} more would pass the limit of ${limits.maxSegments} (TENSORSHM_MAX_SEGMENTS)`) }
  }
  if (limits.maxTotalBytes > 0 && usage.pages + pages > limits.maxTotalBytes) {
    return { reason: 'total_bytes', error: new errors.QuotaExceeded(`tensors: ${pages} bytes of pages more would bring this instance to ${usage.pages + pages} bytes, over the limit of ${limits.maxTotalBytes} (TENSORSHM_MAX_TOTAL_BYTES)`) }
  }
  // tmpfs takes a sparse file of any size; refuse here what could only end as SIGBUS in a client later.
  if (pages > usage.free) {
    return { reason: 'capacity', error: new errors.InsufficientStorage(`tensors: ${pages} bytes do not fit in the ${Math.max(usage.free, 0)} bytes free on /dev/shm`) }
  }
  return undefined
}
