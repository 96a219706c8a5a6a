// Benchmark 3 driver: runs bench/handoff.py (producer + consumer processes) against a service with defaults.
import { join } from 'node:path'
import { BENCH_DIR, median, p90, ROOT, runJson, startService } from './lib/common.mjs'

export async function runHandoff ({ iters = 50, warmup = 10 } = {}) {
  const svc = await startService({}, { label: 'handoff' })
  try {
    const res = await runJson('python3', [join(BENCH_DIR, 'handoff.py'), '--url', `http://127.0.0.1:${svc.port}`, '--iters', String(iters), '--warmup', String(warmup)],
      { env: { PYTHONPATH: join(ROOT, 'clients/python/src') } })
    if (res.bad_copies !== 0) throw new Error(`handoff: ${res.bad_copies} copies did not carry the producer's bytes`)
    const sum = (list) => ({
      median: median(list.map((s) => s.total)),
      p90: p90(list.map((s) => s.total)),
      producerMedian: median(list.map((s) => s.producer)),
      consumerMedian: median(list.map((s) => s.consumer))
    })
    const ref = sum(res.samples.ref)
    const value = sum(res.samples.value)
    const zero = sum(res.samples.zero)
    const zeroFull = sum(res.samples.zero_full)
    return {
      nbytes: res.nbytes,
      shape: res.shape,
      iters,
      warmup,
      ref,
      value,
      zero,
      zeroFull,
      speedup: value.median / ref.median,
      speedupP90: value.p90 / ref.p90,
      zeroSpeedup: value.median / zero.median,
      zeroSpeedupP90: value.p90 / zero.p90,
      zeroFullSpeedup: value.median / zeroFull.median
    }
  } finally {
    await svc.stop()
  }
}
