// Benchmark 5: /healthz latency, polled every ~5 ms from a separate process, while the service allocates 1 GiB
// (reserve on, pool empty), receives 1 GiB (PUT .../data), sends 1 GiB (GET .../data) and, for information,
// releases it (DELETE: the unlink frees 1 GiB of tmpfs pages). Samples whose request started inside an
// operation's window count for it; "idle" is the same poller with nothing else running. Baseline: the bare
// node:http server of benchmark 2, polled the same way by its own poller, moving the same file with the same
// curl (its /healthz shares the machine with curl and the I/O exactly as the service's does).
import { spawn } from 'node:child_process'
import { unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { curlTransfer } from './data-plane.mjs'
import { BENCH_DIR, GiB, max, median, nowEpoch, p99, request, SHM, shmFile, sleep, startServer, startService, writeFilledFile } from './lib/common.mjs'

function startPoller (port, intervalMs) {
  const child = spawn(process.execPath, [join(BENCH_DIR, 'lib/poller.mjs'), String(port), String(intervalMs)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const ready = new Promise((resolve) => child.stdout.once('data', resolve))
  child.stdout.on('data', (d) => { out += d })
  const done = new Promise((resolve) => child.once('exit', () => resolve(JSON.parse(out.split('\n').filter((l) => l.startsWith('['))[0] ?? '[]'))))
  return { ready, stop: () => { child.kill('SIGTERM'); return done } }
}

export async function runResponsiveness ({ reps = 3, intervalMs = 5, size = GiB } = {}) {
  const svc = await startService({ TENSORSHM_MAX_SEGMENT_BYTES: '4GiB' }, { label: 'responsiveness' })
  const source = shmFile('upload1g')
  const bare = await startServer('file-http.mjs')
  const ops = ['idle', 'alloc', 'put', 'get', 'release', 'barePut', 'bareGet']
  const windows = Object.fromEntries(ops.map((k) => [k, []]))
  const durations = Object.fromEntries(ops.map((k) => [k, []]))
  const poller = startPoller(svc.port, intervalMs)
  const barePoller = startPoller(bare.port, intervalMs)
  let samples = []
  let bareSamples = []
  try {
    writeFilledFile(source, size)
    await poller.ready
    await barePoller.ready
    await sleep(300)
    const timed = async (label, fn) => {
      const t0 = nowEpoch()
      await fn()
      const t1 = nowEpoch()
      windows[label].push([t0, t1])
      durations[label].push(t1 - t0)
      await sleep(150)
    }
    for (let i = 0; i < reps; i++) {
      await timed('idle', () => sleep(300))
      let name
      await timed('alloc', async () => {
        const res = await request(svc.port, 'POST', '/v1/segments', { body: { namespace: `bench/big-${i}`, tensors: { t: { shape: [size], dtype: 'uint8' } } } })
        if (res.status !== 201) throw new Error(`POST 1 GiB: ${res.status} ${res.body}`)
        name = JSON.parse(res.body).segments.t.name
      })
      const url = `http://127.0.0.1:${svc.port}/v1/segments/${name}/data`
      const bareUrl = `http://127.0.0.1:${bare.port}/file?path=${encodeURIComponent(`${SHM}/${name}`)}`
      for (const method of ['PUT', 'GET']) {
        const pair = [[method.toLowerCase(), url], [`bare${method[0]}${method.slice(1).toLowerCase()}`, bareUrl]]
        for (const [label, u] of i % 2 === 0 ? pair : pair.reverse()) await timed(label, () => curlTransfer(method, u, { source, bytes: size }))
      }
      await timed('release', async () => {
        const res = await request(svc.port, 'DELETE', `/v1/segments/${name}`)
        if (res.status !== 204) throw new Error(`DELETE: ${res.status}`)
      })
    }
  } finally {
    samples = await poller.stop()
    bareSamples = await barePoller.stop()
    try { unlinkSync(source) } catch {}
    await svc.stop()
    await bare.stop()
  }
  const out = { intervalMs, totalSamples: samples.length, ops: {} }
  for (const [label, list] of Object.entries(windows)) {
    const from = label.startsWith('bare') ? bareSamples : samples
    const inside = from.filter(([t]) => list.some(([a, b]) => t >= a && t <= b))
    const lat = inside.map((s) => s[1])
    out.ops[label] = {
      samples: inside.length,
      failed: inside.filter((s) => s[2] !== 200).length,
      p50: median(lat),
      p99: p99(lat),
      max: max(lat),
      opMsMedian: median(durations[label])
    }
  }
  return out
}
