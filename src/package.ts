import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project's package.json, found by walking up: the same from src/ under tap and from dist/ in production. */
function findPackage (): { name: string, version: string } {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'tensorshm') return { name: pkg.name, version: pkg.version ?? '0.0.0' }
    }
    const up = dirname(dir)
    if (up === dir) return { name: 'tensorshm', version: '0.0.0' }
    dir = up
  }
}

export const pkg = findPackage()
