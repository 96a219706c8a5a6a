import t from 'tap'
import { createHash } from 'node:crypto'
import { truncateSync } from 'node:fs'
import * as shm from '../native/shm.js'
import { ANONYMOUS } from '../src/segments/caller.js'
import { NPY, writeTensor } from '../src/transfer/tensors.js'
import { build, checkNoLeftovers, create, suitePrefix, type Descriptor } from './helpers/build.js'
import { python } from './helpers/python.js'

const prefix = suitePrefix('data')
const env = { TENSORSHM_SEGMENT_PREFIX: prefix }

const pattern = (n: number, seed = 1): Buffer => {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const fileSha = (name: string) => python<string>(`
import hashlib, json, sys
print(json.dumps(hashlib.sha256(open('/dev/shm/' + json.load(sys.stdin), 'rb').read()).hexdigest()))`, name)

t.test('PUT raw bytes, read back by Python and by GET in both formats', async (t) => {
  const app = await build(t, env)
  const { img } = await create(app, 'io', { img: { shape: [2, 3, 4], dtype: '>i2' } }) as { img: Descriptor }
  const data = pattern(img.nbytes)
  const put = await app.inject({ method: 'PUT', url: `/v1/segments/${img.name}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: data })
  t.equal(put.statusCode, 204)
  t.equal(await fileSha(img.name), sha(data), 'the bytes are in the segment')
  const seen = await python<{ hex: string, list: number[] }>(`
import json, sys
import numpy as np
from multiprocessing import resource_tracker, shared_memory
d = json.load(sys.stdin)
s = shared_memory.SharedMemory(name=d['name'])
resource_tracker.unregister(s._name, 'shared_memory')
a = np.ndarray(d['shape'], d['dtype'], buffer=s.buf).copy()
s.close()
print(json.dumps({'hex': a.tobytes().hex(), 'list': a.ravel()[:3].tolist()}))`, img)
  t.equal(seen.hex, data.toString('hex'))
  t.same(seen.list, [data.readInt16BE(0), data.readInt16BE(2), data.readInt16BE(4)], 'big-endian int16 as numpy reads it')

  const raw = await app.inject({ url: `/v1/segments/${img.name}/data`, headers: { accept: 'application/octet-stream' } })
  t.equal(raw.statusCode, 200)
  t.equal(raw.headers['content-type'], 'application/octet-stream')
  t.equal(raw.headers['x-tensor-shape'], '2,3,4')
  t.equal(raw.headers['x-tensor-dtype'], '>i2')
  t.equal(Number(raw.headers['content-length']), img.nbytes)
  t.equal(sha(raw.rawPayload), sha(data))

  const npy = await app.inject({ url: `/v1/segments/${img.name}/data` })
  t.equal(npy.headers['content-type'], 'application/x-npy')
  const loaded = await python<{ shape: number[], dtype: string, hex: string }>(`
import base64, io, json, sys
import numpy as np
a = np.load(io.BytesIO(base64.b64decode(json.load(sys.stdin))))
print(json.dumps({'shape': list(a.shape), 'dtype': str(a.dtype), 'hex': a.tobytes().hex()}))`, npy.rawPayload.toString('base64'))
  t.same(loaded, { shape: [2, 3, 4], dtype: '>i2', hex: data.toString('hex') })
})

t.test('PUT an npy that numpy wrote; its header must match and arrive whole', async (t) => {
  const app = await build(t, env)
  const { x } = await create(app, 'npy', { x: { shape: [3, 5], dtype: 'float32' } }) as { x: Descriptor }
  const made = await python<Record<string, string>>(`
import base64, io, json
import numpy as np
a = (np.arange(15, dtype='<f4') * 1.5).reshape(3, 5)
def npy(arr):
    b = io.BytesIO(); np.save(b, arr); return base64.b64encode(b.getvalue()).decode()
print(json.dumps({'good': npy(a), 'data': base64.b64encode(a.tobytes()).decode(), 'shape': npy(a.reshape(5, 3)),
  'dtype': npy(a.astype('<f8')), 'fortran': npy(np.asfortranarray(a)), 'big': npy(a.astype('>f4'))}))`)
  const put = (body: Buffer, type = 'application/x-npy') => app.inject({ method: 'PUT', url: `/v1/segments/${x.name}/data`, headers: { 'content-type': type }, payload: body })
  const b64 = (k: string) => Buffer.from(made[k] ?? '', 'base64')
  t.equal((await put(b64('good'))).statusCode, 204)
  t.equal(await fileSha(x.name), sha(b64('data')))

  const zero = Buffer.alloc(x.nbytes)
  t.equal((await put(zero, 'application/octet-stream')).statusCode, 204)
  const refusals: Array<[string, Buffer, number, string, RegExp]> = [
    ['shape', b64('shape'), 422, 'TSHM_SPEC_MISMATCH', /shape: \(5, 3\) is not the segment's \(3, 5\)/],
    ['dtype', b64('dtype'), 422, 'TSHM_SPEC_MISMATCH', /dtype: "<f8" is not the segment's float32/],
    ['byte order', b64('big'), 422, 'TSHM_SPEC_MISMATCH', /dtype: ">f4"/],
    ['fortran order', b64('fortran'), 422, 'TSHM_SPEC_MISMATCH', /fortran_order/],
    ['extra bytes', Buffer.concat([b64('good'), Buffer.from('x')]), 400, 'TSHM_LENGTH_MISMATCH', /Content-Length/],
    ['missing bytes', b64('good').subarray(0, -4), 400, 'TSHM_LENGTH_MISMATCH', /Content-Length/],
    ['garbage', Buffer.from('hello, this is not an npy file at all'), 400, 'TSHM_INVALID_NPY', /npy header/],
    ['cut in the header', b64('good').subarray(0, 20), 400, 'TSHM_INVALID_NPY', /ended inside the npy header/]
  ]
  for (const [label, body, status, code, message] of refusals) {
    const r = await put(body)
    t.equal(r.statusCode, status, label)
    t.match(r.json(), { code, message }, label)
  }
  for (const [label, body] of [['short', Buffer.alloc(x.nbytes - 1)], ['long', Buffer.alloc(x.nbytes + 1)]] as const) {
    const r = await put(body, 'application/octet-stream')
    t.match(r.json(), { statusCode: 400, code: 'TSHM_LENGTH_MISMATCH' }, label)
  }
  t.equal(await fileSha(x.name), sha(zero), 'no refused upload wrote a byte')
  const text = await put(Buffer.from('x'), 'text/csv')
  t.match(text.json(), { statusCode: 415, code: 'TSHM_UNSUPPORTED_MEDIA_TYPE' })
  const accept = await app.inject({ url: `/v1/segments/${x.name}/data`, headers: { accept: 'image/png' } })
  t.match(accept.json(), { statusCode: 406, code: 'TSHM_NOT_ACCEPTABLE' })
})

t.test('an upload without Content-Length is refused (411) before a byte is written', async (t) => {
  const app = await build(t, env)
  const { x } = await create(app, 'chunked', { x: { shape: [8], dtype: 'uint8' } }) as { x: Descriptor }
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const body = new ReadableStream({ start (c) { c.enqueue(new Uint8Array(8).fill(9)); c.close() } })
  const res = await fetch(`${url}/v1/segments/${x.name}/data`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body, duplex: 'half' } as RequestInit)
  t.equal(res.status, 411)
  t.match(await res.json(), { code: 'TSHM_LENGTH_REQUIRED' })
  t.equal(await fileSha(x.name), sha(Buffer.alloc(8)))
})

t.test('a segment truncated or unlinked behind the service\'s back: clean errors, the service stays up', async (t) => {
  const app = await build(t, env)
  const segs = await create(app, 'hostile', { a: { shape: [1024], dtype: 'uint8' }, b: { shape: [16], dtype: 'uint8' } }) as Record<'a' | 'b', Descriptor>
  truncateSync(`/dev/shm/${segs.a.name}`, 0)
  for (const accept of ['application/x-npy', 'application/octet-stream']) {
    const r = await app.inject({ url: `/v1/segments/${segs.a.name}/data`, headers: { accept } })
    t.match(r.json(), { statusCode: 409, code: 'TSHM_SEGMENT_TRUNCATED', message: /holds 0 of its 1024 bytes/ })
  }
  const put = await app.inject({ method: 'PUT', url: `/v1/segments/${segs.a.name}/data`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(1024) })
  t.match(put.json(), { statusCode: 409, code: 'TSHM_SEGMENT_TRUNCATED' })
  t.equal((await app.inject({ url: `/v1/segments/${segs.a.name}` })).json().present, true, 'a truncated segment stays registered')

  shm.unlink(segs.b.name)
  const gone = await app.inject({ url: `/v1/segments/${segs.b.name}/data` })
  t.match(gone.json(), { statusCode: 410, code: 'TSHM_SEGMENT_GONE' })
  t.equal((await app.inject({ url: `/v1/segments/${segs.b.name}` })).statusCode, 404, 'the registry learned it')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
})

t.test('truncated to 0 while a large read streams: the response fails, the process does not', async (t) => {
  const app = await build(t, env)
  const { big } = await create(app, 'midread', { big: { shape: [64, 1024, 1024], dtype: 'uint8' } }) as { big: Descriptor }
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await fetch(`${url}/v1/segments/${big.name}/data`, { headers: { accept: 'application/octet-stream' } })
  t.equal(res.status, 200)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let got = (await reader.read()).value?.length ?? 0
  // Another process truncates the file: reading an mmap'ed page now would be SIGBUS for this whole test process.
  await python('import json, os, sys; os.truncate("/dev/shm/" + json.load(sys.stdin), 0); print("null")', big.name)
  let failed = false
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      got += value.length
    }
  } catch {
    failed = true
  }
  t.ok(failed, 'the client sees an error, not a silently short body')
  t.ok(got < big.nbytes, `${got} of ${big.nbytes} bytes arrived`)
  const health = await fetch(`${url}/healthz`)
  t.equal(health.status, 200, 'the service goes on serving')
})

t.test('an npy with a 1 MiB header arriving 16 bytes at a time is joined once, not once per piece (issue #10)', async (t) => {
  const app = await build(t, env)
  const { x } = await create(app, 'slowheader', { x: { shape: [4], dtype: 'uint8' } }) as { x: Descriptor }
  // A valid 2.0 preamble padded with spaces to just under 1 MiB, then the 4 data bytes.
  const preamble = Buffer.alloc((1 << 20) - 64, ' ')
  preamble.write('\x93NUMPY\x02\x00', 'latin1')
  preamble.writeUInt32LE(preamble.length - 12, 8)
  preamble.write("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 12, 'latin1')
  preamble[preamble.length - 1] = 0x0a
  const data = Buffer.from([1, 2, 3, 4])
  const body = Buffer.concat([preamble, data])
  async function * pieces (): AsyncGenerator<Buffer> {
    for (let i = 0; i < body.length; i += 16) yield body.subarray(i, i + 16)
  }
  // Counts what Buffer.concat copies while the upload runs; past 8x the body it is quadratic, and stops the test there.
  const concat = Buffer.concat
  const copies = { calls: 0, bytes: 0 }
  Buffer.concat = (list, totalLength) => {
    const out = concat(list, totalLength)
    copies.calls++
    copies.bytes += out.length
    if (copies.bytes > 8 * body.length) throw new Error(`Buffer.concat copied ${copies.bytes} bytes in ${copies.calls} calls for a ${body.length}-byte body`)
    return out
  }
  let written
  try {
    written = await writeTensor(app.segments, app.segments.get(x.name, ANONYMOUS), NPY, body.length, pieces())
  } finally {
    Buffer.concat = concat
  }
  t.equal(written, data.length)
  t.ok(copies.bytes <= 2 * body.length, `${copies.bytes} bytes copied in ${copies.calls} calls for a ${body.length}-byte body`)
  t.ok(copies.calls <= 16, 'a constant number of joins, not one per piece')
  t.equal(await fileSha(x.name), sha(data))
})

checkNoLeftovers(t, prefix)
