// The kernel's part of benchmark 1's pair timed inside the service, under the benchmark's own load. A copy of
// dist/ (in the run's scratch directory) whose native/libc.js times every libc call, and native/io.js every
// zeroSync, with hrtime; the copy runs as the service with its defaults, the figures come out in its log at exit.
// A sampling profiler cannot give this figure: it samples when a signal is delivered, which is at the return from a
// system call, so its samples pile up on system calls (it put 40-48% of the service's time there, against the 20%
// timed here). The service's own build is not touched; the copy only adds the counting.
import { copyFileSync, cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, WORK } from './common.mjs'

const COUNTERS = `
const __insitu = { by: {} }
// A declaration, so that the wrapped exports above can call it while the module is still being evaluated.
function __timed (label, fn) {
  return Object.assign((...args) => {
    const t = process.hrtime.bigint()
    try { return fn(...args) } finally {
      const c = (__insitu.by[label] ??= { calls: 0, ns: 0n })
      c.calls++
      c.ns += process.hrtime.bigint() - t
    }
  }, fn.async === undefined ? {} : { async: fn.async })
}
process.on('exit', () => {
  const by = Object.fromEntries(Object.entries(__insitu.by).map(([k, v]) => [k, { calls: v.calls, us: Number(v.ns) / 1000 }]))
  process.stderr.write('IN-SITU ' + JSON.stringify(by) + '\\n')
})
export { __timed }
`

/** Builds the counting copy once per run; returns the path of its server.js. */
export function inSituBuild () {
  const dir = join(WORK, 'in-situ')
  mkdirSync(dir, { recursive: true })
  cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true })
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  const libc = join(dir, 'dist/native/libc.js')
  let text = readFileSync(libc, 'utf8')
  let wrapped = 0
  text = text.replace(/^export const (\w+) = (libc\.func\(.*\));$/gm, (_, name, call) => { wrapped++; return `export const ${name} = __timed('${name}', ${call});` })
  if (wrapped < 8) throw new Error(`in-situ: only ${wrapped} libc functions found to time in ${libc}`)
  writeFileSync(libc, text + COUNTERS)
  const io = join(dir, 'dist/native/io.js')
  const source = readFileSync(io, 'utf8')
  const zeroSync = /^export function zeroSync\(/m
  if (!zeroSync.test(source)) throw new Error('in-situ: zeroSync not found in native/io.js')
  writeFileSync(io, source.replace(zeroSync, 'function zeroSyncUntimed(') + "\nimport { __timed } from './libc.js';\nexport const zeroSync = __timed('zero', zeroSyncUntimed);\n")
  return join(dir, 'dist/src/server.js')
}

/** The IN-SITU line of a service log: {label: {calls, us}}. */
export function inSituFigures (logText) {
  const line = /IN-SITU (.*)/.exec(logText)
  if (line === null) throw new Error('in-situ: the service wrote no figures at exit')
  return JSON.parse(line[1])
}
