// Polls GET /healthz every `intervalMs` on one keep-alive connection until SIGTERM (or `maxMs`), then prints
// every sample as JSON: [start (epoch ms, sub-ms), latency ms, status]. A request that takes longer than the
// interval delays the next one: samples never overlap, so a blocked event loop shows as one long sample.
import http from 'node:http'

const [port, intervalMs = '5', maxMs = '120000'] = process.argv.slice(2)
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
const samples = []
const state = { stopping: false }
const epoch = () => performance.timeOrigin + performance.now()

function get () {
  return new Promise((resolve) => {
    const t0 = epoch()
    const req = http.get({ host: '127.0.0.1', port: Number(port), path: '/healthz', agent }, (res) => {
      res.resume()
      res.on('end', () => resolve([t0, epoch() - t0, res.statusCode]))
    })
    req.on('error', () => resolve([t0, epoch() - t0, 0]))
  })
}

function finish () {
  process.stdout.write(JSON.stringify(samples) + '\n', () => process.exit(0))
}

process.on('SIGTERM', () => { state.stopping = true })
const end = Date.now() + Number(maxMs)
process.stdout.write('ready\n')
while (!state.stopping && Date.now() < end) {
  const start = performance.now()
  samples.push(await get())
  const wait = Number(intervalMs) - (performance.now() - start)
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
}
finish()
