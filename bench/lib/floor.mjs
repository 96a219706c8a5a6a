// The kernel's part of what the service does, timed in a loop without HTTP, in a process of its own (lib/floor-ops.mjs).
// Prints JSON: CPU µs (user + system, this process) per operation, the median of `blocks` blocks of `n` operations.
// Nothing is left behind.
//   node floor.mjs '{"prefix": "...", "n": 500, "blocks": 5, "size": 65536}'
import { floorOps } from './floor-ops.mjs'

const { prefix, n = 500, blocks = 5, size = 65536 } = JSON.parse(process.argv[2])
const ops = floorOps({ prefix, n, size })
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const out = {}
try {
  for (const k of ['freshCreate', 'pooledCreate', 'pooledPair']) {
    const f = ops[k]
    await f() // warm-up
    const runs = []
    for (let b = 0; b < blocks; b++) runs.push(await f())
    out[k] = median(runs)
  }
} finally {
  ops.cleanup()
}
console.log(JSON.stringify(out))
