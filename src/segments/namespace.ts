/** Namespaces are client-chosen paths such as `<client_id>/<object_id>`; releases match whole `/` components. */

export const NAMESPACE_PATTERN = '^[A-Za-z0-9_.:@=+-]+(/[A-Za-z0-9_.:@=+-]+)*$'
export const NAMESPACE_MAX_LENGTH = 256
/**
 * Tensor keys within a namespace; they also name NPZ members, so they stay file-name safe. Not `__proto__`: a JSON
 * body cannot carry that key (the parser refuses it, see plugins/app/json-body.ts), and the schema says so.
 */
export const KEY_PATTERN = '^(?!__proto__$)[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}$'

const namespaceRe = new RegExp(NAMESPACE_PATTERN)
const keyRe = new RegExp(KEY_PATTERN)
export const isNamespace = (v: unknown): v is string => typeof v === 'string' && v.length <= NAMESPACE_MAX_LENGTH && namespaceRe.test(v)
export const isKey = (v: unknown): v is string => typeof v === 'string' && keyRe.test(v)

/** `a` covers `a` and `a/x`, never `ab`. */
export function namespaceCovers (prefix: string, namespace: string): boolean {
  return namespace === prefix || (namespace.startsWith(prefix) && namespace.charCodeAt(prefix.length) === 0x2f)
}

/** The first component, the client in `<client_id>/<object_id>`. */
export function namespaceRoot (namespace: string): string {
  const slash = namespace.indexOf('/')
  return slash === -1 ? namespace : namespace.slice(0, slash)
}
