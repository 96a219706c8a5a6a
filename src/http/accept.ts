/** Picks what to answer from an Accept header: highest q, then the most specific range, then our preference order. */
export function negotiate (accept: string | undefined, offered: readonly string[]): string | undefined {
  if (accept === undefined || accept.trim() === '') return offered[0]
  const ranges = accept.split(',').map((part) => {
    const [type = '', ...params] = part.trim().toLowerCase().split(';').map((s) => s.trim())
    const q = params.find((p) => p.startsWith('q='))
    const quality = q === undefined ? 1 : Number(q.slice(2))
    return { type, quality: Number.isFinite(quality) ? quality : 0 }
  })
  let best: { type: string, quality: number } | undefined
  for (const type of offered) {
    const [major] = type.split('/')
    const match = ranges.find((r) => r.type === type) ?? ranges.find((r) => r.type === `${major ?? ''}/*`) ?? ranges.find((r) => r.type === '*/*')
    if (match !== undefined && match.quality > 0 && (best === undefined || match.quality > best.quality)) best = { type, quality: match.quality }
  }
  return best?.type
}

/** A parameter of the Accept range that names `type` exactly (`protocol` of `application/x-python-pickle; protocol=2`). */
export function acceptParam (accept: string | undefined, type: string, name: string): string | undefined {
  for (const part of (accept ?? '').split(',')) {
    const [range = '', ...params] = part.split(';').map((s) => s.trim())
    if (range.toLowerCase() !== type) continue
    for (const p of params) {
      const eq = p.indexOf('=')
      if (eq > 0 && p.slice(0, eq).trim().toLowerCase() === name) return p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1')
    }
  }
  return undefined
}
