import { spawn } from 'node:child_process'

/**
 * Runs a real python3 (with numpy) on `script`; `input` arrives as JSON on stdin, and whatever the script prints
 * last (as JSON) comes back. A non-zero exit rejects with its stderr.
 */
export async function python<T = unknown> (script: string, input: unknown = null, timeoutMs = 60_000): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`python3 exited ${String(code)}: ${err.trim()}`))
      const last = out.trim().split('\n').pop() ?? 'null'
      try {
        resolve(JSON.parse(last) as T)
      } catch {
        reject(new Error(`python3 printed no JSON: ${out.slice(-500)} ${err.slice(-500)}`))
      }
    })
    child.stdin.end(JSON.stringify(input))
  })
}
