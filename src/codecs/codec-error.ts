/**
 * What a codec can find wrong with its input. Codecs know nothing of HTTP: the error registry (src/errors.ts) gives
 * each kind its TSHM_* code, in the one table every answer comes from.
 */
export type CodecErrorKind = 'InvalidDescriptor' | 'InvalidPickle' | 'PickleRefused' | 'LimitExceeded' | 'InvalidNpy'

export class CodecError extends Error {
  constructor (readonly kind: CodecErrorKind, message: string) {
    super(message)
    this.name = 'CodecError'
  }
}
