// Baseline for benchmarks 2 and 5: a bare node:http server that streams a /dev/shm file out with
// fs.createReadStream (GET) or pipes the request into fs.createWriteStream on it (PUT, in place: flags r+,
// so the file keeps its pages exactly as the service's pwrite does). Only this bench run's files are served.
import { createReadStream, createWriteStream, statSync } from 'node:fs'
import http from 'node:http'
import { pipeline } from 'node:stream'

const port = Number(process.argv[2])
const allowed = /^\/dev\/shm\/tshmbench_[A-Za-z0-9_]+$/

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  if (url.pathname === '/healthz') { res.setHeader('content-type', 'application/json'); res.end('{"status":"ok"}'); return }
  const path = url.searchParams.get('path') ?? ''
  if (url.pathname !== '/file' || !allowed.test(path)) { res.statusCode = 404; res.end(); return }
  if (req.method === 'GET') {
    const size = Number(url.searchParams.get('bytes') ?? statSync(path).size)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
    pipeline(createReadStream(path, { start: 0, end: size - 1 }), res, () => {})
  } else if (req.method === 'PUT') {
    pipeline(req, createWriteStream(path, { flags: 'r+' }), (err) => {
      res.statusCode = err == null ? 204 : 500
      res.end()
    })
  } else {
    res.statusCode = 405
    res.end()
  }
})
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => { server.close(); process.exit(0) })
