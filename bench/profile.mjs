// Profiling passes (not part of any measured figure): the service under benchmark 1's load and under
// benchmark 2's transfers, and the bare-Fastify baseline under the same request pair, each with
// node --cpu-prof into a scratch directory; the .cpuprofile files are summarised and then deleted.
import { mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { cannon } from './control-plane.mjs'
import { curlTransfer, SIZE } from './data-plane.mjs'
import { json, shmFile, startServer, startService, WORK, writeFilledFile } from './lib/common.mjs'
import { monotonicUs, summarizeFile } from './lib/cpuprofile.mjs'

function profDir (label) {
  const dir = join(WORK, `prof-${label}`)
  mkdirSync(dir, { recursive: true })
  return dir
}

function collect (dir, window) {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`)
  const summary = summarizeFile(join(dir, files[0]), 25, window)
  rmSync(dir, { recursive: true, force: true })
  return summary
}

export async function runProfiles ({ duration = 6 } = {}) {
  const out = {}
  // 1. Control plane.
  let dir = profDir('control')
  let svc = await startService({ TENSORSHM_LOG_LEVEL: 'info' }, { label: 'prof-control', nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] })
  let from = monotonicUs()
  const load = await cannon(svc.port, 'service-pair', { duration, warmup: 1 })
  let window = [from, monotonicUs()]
  await svc.stop()
  out.control = { load: { reqPerSec: load.reqPerSec }, ...collect(dir, window) }
  // 1b. The bare-Fastify baseline answering the same request pair.
  dir = profDir('bare')
  const bare = await startServer('bare-segments.mjs', [], { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] })
  from = monotonicUs()
  const bareLoad = await cannon(bare.port, 'service-pair', { duration, warmup: 1 })
  window = [from, monotonicUs()]
  await bare.stop()
  out.barePair = { load: { reqPerSec: bareLoad.reqPerSec }, ...collect(dir, window) }
  // 2. Data plane: 3 GETs and 3 PUTs of 256 MiB.
  dir = profDir('data')
  svc = await startService({}, { label: 'prof-data', nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] })
  const source = shmFile('prof-upload')
  try {
    writeFilledFile(source, SIZE)
    const made = await json(svc.port, 'POST', '/v1/segments', { namespace: 'bench/prof', tensors: { t: { shape: [SIZE], dtype: 'uint8' } } }, 201)
    const url = `http://127.0.0.1:${svc.port}/v1/segments/${made.segments.t.name}/data`
    const get = []
    const put = []
    from = monotonicUs()
    for (let i = 0; i < 3; i++) {
      put.push((await curlTransfer('PUT', url, { source, bytes: SIZE })).mbps)
      get.push((await curlTransfer('GET', url, { bytes: SIZE })).mbps)
    }
    window = [from, monotonicUs()]
    out.data = { load: { getMBps: get, putMBps: put } }
  } finally {
    try { unlinkSync(source) } catch {}
    await svc.stop()
  }
  Object.assign(out.data, collect(dir, window))
  return out
}
