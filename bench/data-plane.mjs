// Benchmark 2: GET and PUT of a 256 MiB tensor through /v1/segments/{name}/data against a bare node:http
// server streaming the same /dev/shm file (createReadStream / createWriteStream r+), with curl as the client.
// Reports MB/s medians of alternating repetitions and the service's RSS growth (peak minus before).
import { unlinkSync } from 'node:fs'
import { json, median, MiB, procStatus, rssSampler, run, shmFile, SHM, startServer, startService, writeFilledFile } from './lib/common.mjs'

export const SIZE = 256 * MiB

/** One curl transfer; returns seconds, bytes and the server's RSS growth while it ran. */
export async function curlTransfer (method, url, { pid, source, bytes }) {
  const args = ['-s', '-S', '-o', '/dev/null', '--no-buffer', '-w', '%{http_code} %{size_download} %{size_upload} %{time_total}']
  if (method === 'GET') args.push('-H', 'Accept: application/octet-stream')
  else args.push('-X', 'PUT', '-T', source, '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:')
  const rss = pid === undefined ? undefined : rssSampler(pid)
  const out = await run('curl', [...args, url])
  const mem = rss?.stop()
  const [code, down, up, total] = out.trim().split(' ').map(Number)
  const moved = method === 'GET' ? down : up
  if ((method === 'GET' && code !== 200) || (method === 'PUT' && code !== 204) || moved !== bytes) {
    throw new Error(`${method} ${url}: HTTP ${code}, ${moved} of ${bytes} bytes`)
  }
  return { seconds: total, mbps: bytes / total / 1e6, rssGrowth: mem?.growth, rssBefore: mem?.before, rssPeak: mem?.peak }
}

export async function runDataPlane ({ reps = 5, log = () => {} } = {}) {
  const svc = await startService({}, { label: 'data' })
  const bare = await startServer('file-http.mjs')
  const source = shmFile('upload256')
  try {
    writeFilledFile(source, SIZE)
    const made = await json(svc.port, 'POST', '/v1/segments', { namespace: 'bench/data-1', tensors: { t: { shape: [SIZE], dtype: 'uint8' } } }, 201)
    const name = made.segments.t.name
    const file = `${SHM}/${name}`
    const urls = {
      service: `http://127.0.0.1:${svc.port}/v1/segments/${name}/data`,
      baseline: `http://127.0.0.1:${bare.port}/file?path=${encodeURIComponent(file)}`
    }
    const pids = { service: svc.pid, baseline: bare.pid }
    const results = { GET: { service: [], baseline: [] }, PUT: { service: [], baseline: [] } }
    const rssAtStart = procStatus(svc.pid).rss
    let rssPeak = rssAtStart
    // Warm-up: one of each (fills the segment, JITs both servers); the service's RSS is watched from here on.
    for (const method of ['PUT', 'GET']) {
      for (const who of ['service', 'baseline']) {
        const r = await curlTransfer(method, urls[who], { pid: pids[who], source, bytes: SIZE })
        if (who === 'service') rssPeak = Math.max(rssPeak, r.rssPeak)
      }
    }
    for (let i = 0; i < reps; i++) {
      const order = i % 2 === 0 ? ['service', 'baseline'] : ['baseline', 'service']
      for (const method of ['GET', 'PUT']) {
        for (const who of order) {
          const r = await curlTransfer(method, urls[who], { pid: pids[who], source, bytes: SIZE })
          results[method][who].push(r)
          if (who === 'service') rssPeak = Math.max(rssPeak, r.rssPeak)
          log(`  ${method} ${who.padEnd(8)} ${r.mbps.toFixed(0)} MB/s, RSS +${(r.rssGrowth / MiB).toFixed(1)} MiB`)
        }
      }
    }
    await json(svc.port, 'DELETE', `/v1/segments/${name}`, undefined, 204)
    const summary = { rssAtStartMiB: rssAtStart / MiB, rssPeakMiB: rssPeak / MiB, coldRssGrowthMiB: (rssPeak - rssAtStart) / MiB }
    for (const method of ['GET', 'PUT']) {
      const s = results[method]
      const ratios = s.service.map((r, i) => r.mbps / s.baseline[i].mbps)
      summary[method] = {
        serviceMBps: median(s.service.map((r) => r.mbps)),
        baselineMBps: median(s.baseline.map((r) => r.mbps)),
        ratioOfMedians: median(s.service.map((r) => r.mbps)) / median(s.baseline.map((r) => r.mbps)),
        medianPairRatio: median(ratios),
        serviceRssGrowthMaxMiB: Math.max(...s.service.map((r) => r.rssGrowth)) / MiB,
        baselineRssGrowthMaxMiB: Math.max(...s.baseline.map((r) => r.rssGrowth)) / MiB,
        serviceRssBeforeMiB: s.service[0].rssBefore / MiB,
        raw: s
      }
    }
    return summary
  } finally {
    try { unlinkSync(source) } catch {}
    await svc.stop()
    await bare.stop()
  }
}
