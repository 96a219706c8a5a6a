// Summarises a V8 .cpuprofile: self time per function and per "area" (package, node module, tensorshm file,
// GC, idle), plus inclusive time per area (a sample counts once for every area on its stack).
// CLI: node bench/lib/cpuprofile.mjs file.cpuprofile [top]
import { readFileSync } from 'node:fs'

function area (frame) {
  const { url, functionName } = frame
  if (url === '') {
    if (functionName.startsWith('(')) return functionName
    return `native ${functionName}`
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (nm !== null) return nm[1]
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+(?:\/[^/]+)?)/.exec(url)
    return `node:${(m?.[1] ?? url).replace(/\.js$/, '')}`
  }
  const own = /\/dist\/(.*)$/.exec(url) ?? /\/bench\/(.*)$/.exec(url)
  if (own !== null) return `tensorshm ${own[1]}`
  return url.replace(/^file:\/\//, '')
}

/** `window`: [from, to] in µs of CLOCK_MONOTONIC (process.hrtime), the clock V8 stamps samples with; only samples
 * inside it count, so that start-up (module loading, schema compilation) stays out of the figures. */
export function summarize (profile, top = 20, window = undefined) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map()
  const incl = new Map()
  const own = new Map()
  let total = 0
  let idle = 0
  const { samples, timeDeltas } = profile
  let t = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i]
    const dt = (timeDeltas[i + 1] ?? 0) / 1000
    if (dt <= 0) continue
    if (window !== undefined && (t < window[0] || t > window[1])) continue
    const node = nodes.get(samples[i])
    const f = node.callFrame
    total += dt
    if (f.functionName === '(idle)') { idle += dt; continue }
    const key = `${f.functionName || '(anonymous)'} ${area(f)}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`
    self.set(key, (self.get(key) ?? 0) + dt)
    // The nearest tensorshm frame on the stack (self included): which service function this time is spent for.
    let ownKey = 'no tensorshm frame (HTTP, fastify, GC, ...)'
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const cf = nodes.get(id).callFrame
      if (/\/dist\/(src|routes|native)\//.test(cf.url)) {
        ownKey = `${cf.functionName || '(anonymous)'} ${area(cf).replace('tensorshm ', '')}:${cf.lineNumber + 1}`
        if (id !== node.id) ownKey += ` > ${f.functionName || '(anonymous)'}`
        break
      }
    }
    own.set(ownKey, (own.get(ownKey) ?? 0) + dt)
    const seen = new Set()
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const a = area(nodes.get(id).callFrame)
      if (a === '(root)' || seen.has(a)) continue
      seen.add(a)
      incl.set(a, (incl.get(a) ?? 0) + dt)
    }
  }
  const busy = total - idle
  const selfByArea = new Map()
  for (const [key, ms] of self) {
    const a = key.slice(key.indexOf(' ') + 1).replace(/:\d+$/, '')
    selfByArea.set(a, (selfByArea.get(a) ?? 0) + ms)
  }
  const rank = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, ms]) => ({ name, ms: Math.round(ms), pct: Math.round(1000 * ms / busy) / 10 }))
  return { totalMs: Math.round(total), busyMs: Math.round(busy), idlePct: Math.round(1000 * idle / total) / 10, topSelf: rank(self, top), byOwnFrame: rank(own, top), selfByArea: rank(selfByArea, top), inclusiveByArea: rank(incl, top) }
}

export function summarizeFile (file, top, window) {
  return summarize(JSON.parse(readFileSync(file, 'utf8')), top, window)
}

/** Now on the profile's clock, in µs. */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n)

export function formatSummary (s, top = 12) {
  const lines = [`busy ${s.busyMs} ms of ${s.totalMs} ms sampled (idle ${s.idlePct}%); shares are of busy time`]
  lines.push('  self time by function:')
  for (const r of s.topSelf.slice(0, top)) lines.push(`    ${String(r.pct).padStart(5)}%  ${r.name}`)
  if (s.byOwnFrame !== undefined) {
    lines.push('  by nearest tensorshm function on the stack (> the function that held the CPU):')
    for (const r of s.byOwnFrame.slice(0, top)) lines.push(`    ${String(r.pct).padStart(5)}%  ${r.name}`)
  }
  lines.push('  self time by area:')
  for (const r of s.selfByArea.slice(0, top)) lines.push(`    ${String(r.pct).padStart(5)}%  ${r.name}`)
  lines.push('  inclusive time by area (stack contains it):')
  for (const r of s.inclusiveByArea.slice(0, top)) lines.push(`    ${String(r.pct).padStart(5)}%  ${r.name}`)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const [file, top = '20'] = process.argv.slice(2)
  if (file !== undefined) console.log(formatSummary(summarizeFile(file, Number(top)), Number(top)))
}
