import fc from 'fast-check'

/** Byte-level damage to a valid input: a flipped bit pattern, an inserted byte, or a deleted one. */
export type Mutation = { kind: 'flip', at: number, mask: number } | { kind: 'insert', at: number, byte: number } | { kind: 'delete', at: number }

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() })
)

export function mutate (data: Buffer, mutations: Mutation[]): Buffer {
  let out = Buffer.from(data)
  for (const m of mutations) {
    const at = m.at % (out.length + 1)
    if (m.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([m.byte]), out.subarray(at)])
    else if (at < out.length && m.kind === 'flip') out[at] = (out[at] ?? 0) ^ m.mask
    else if (at < out.length) out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)])
  }
  return out
}
