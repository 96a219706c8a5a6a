// One autocannon measurement in its own process (so the load generator never shares a heap with the
// orchestrator): `node cannon.mjs <json>` with {port, scenario, connections, duration, warmup}; prints JSON.
import autocannon from 'autocannon'

const { port, scenario, connections = 16, duration = 10, warmup = 2, base = 0, socketPath } = JSON.parse(process.argv[2])
const KiB64 = 65536

// Object ids continue across invocations (`base`): a pair cut off by the end of a run leaves its segment
// registered, and a later run must not collide with its namespace/key (409).
let n = base
const createBody = () => JSON.stringify({ namespace: `bench/obj-${++n}`, tensors: { x: { shape: [KiB64], dtype: 'uint8' } } })

/** A 64 KiB JSON document: the 64 KiB tensor's neighbour, sent by value (a base64 string of 48 KiB). */
function echoBody () {
  const head = '{"namespace":"bench/obj-1","tensors":{"x":{"shape":[65536],"dtype":"uint8","data":"'
  const tail = '"}}}'
  return head + 'A'.repeat(KiB64 - head.length - tail.length) + tail
}

// Create latency in µs, per POST, from the moment autocannon builds the request to its response (autocannon's own
// histogram counts whole milliseconds and mixes in the DELETEs).
const creates = []
let measuring = false

function pair (postPath, deletePath, nameOf) {
  return [
    {
      method: 'POST',
      path: postPath,
      headers: { 'content-type': 'application/json' },
      setupRequest: (req, context) => { context.t0 = process.hrtime.bigint(); return { ...req, body: createBody() } },
      onResponse: (status, body, context) => {
        if (measuring) creates.push(Number(process.hrtime.bigint() - context.t0) / 1000)
        if (status === 201) context.name = nameOf(body)
      }
    },
    {
      method: 'DELETE',
      setupRequest: (req, context) => ({ ...req, path: deletePath(context.name) })
    }
  ]
}

const scenarios = {
  // The service, or the bare app answering the same pair: create a 64 KiB segment, release it by the name the POST returned.
  'service-pair': () => ({ requests: pair('/v1/segments', (name) => `/v1/segments/${name}`, (body) => JSON.parse(body).segments.x.name), perIteration: 2 }),
  // Bare Fastify: one POST of a 64 KiB JSON body, echoed back.
  echo64k: () => ({ requests: [{ method: 'POST', path: '/echo', headers: { 'content-type': 'application/json' }, body: echoBody() }], perIteration: 1 })
}

function once (seconds) {
  const { requests, perIteration } = scenarios[scenario]()
  return new Promise((resolve, reject) => {
    autocannon({ url: `http://127.0.0.1:${port}`, ...(socketPath === undefined ? {} : { socketPath }), connections, duration: seconds, requests }, (err, result) => {
      if (err != null) reject(err)
      else resolve({ result, perIteration })
    })
  })
}

if (warmup > 0) await once(warmup)
measuring = true
const { result, perIteration } = await once(duration)
creates.sort((a, b) => a - b)
const at = (q) => creates.length === 0 ? NaN : creates[Math.min(creates.length - 1, Math.floor(q * creates.length))]
const seconds = result.duration
const reqPerSec = result.requests.total / seconds
console.log(JSON.stringify({
  scenario,
  connections,
  seconds,
  requests: result.requests.total,
  reqPerSec,
  itersPerSec: reqPerSec / perIteration,
  p50: result.latency.p50,
  p99: result.latency.p99,
  mean: result.latency.average,
  errors: result.errors,
  timeouts: result.timeouts,
  non2xx: result.non2xx,
  bytesPerSec: result.throughput.average,
  createP50Us: at(0.5),
  createP99Us: at(0.99)
}))
