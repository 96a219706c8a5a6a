/** Namespaces are client-chosen paths such as `<client_id>/<object_id>`; releases match whole `/` components. */

export const NAMESPACE_PATTERN = '^[A-Za-z0-9_.:@=+-]+(/[A-Za-z0-9_.:@=+-]+)*$'
export const NAMESPACE_MAX_LENGTH = 256

/** `a` covers `a` and `a/x`, never `ab`. */
export function namespaceCovers (prefix: string, namespace: string): boolean {
  return namespace === prefix || (namespace.startsWith(prefix) && namespace.charCodeAt(prefix.length) === 0x2f)
}

/** The first component, the client in `<client_id>/<object_id>`. */
export function namespaceRoot (namespace: string): string {
  const slash = namespace.indexOf('/')
  return slash === -1 ? namespace : namespace.slice(0, slash)
}
