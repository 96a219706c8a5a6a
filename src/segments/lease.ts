/** A year: leases longer than that are a mistake, and the arithmetic stays far from overflow. */
export const MAX_TTL = 365 * 24 * 3600

/** When a lease of `ttl` seconds taken at `now` runs out; null when it never does (ttl 0). */
export const expiry = (now: number, ttl: number): number | null => ttl === 0 ? null : now + ttl * 1000
