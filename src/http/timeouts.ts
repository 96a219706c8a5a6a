import type { ServerOptions } from 'node:http'
import type { Config } from '../config.js'

/** The limits every listener keeps, TCP and Unix socket alike (see serverOptions in app.ts for why each). */
export function timeouts (config: Config): { connectionTimeout: number, keepAliveTimeout: number, requestTimeout: number, http: ServerOptions } {
  return {
    connectionTimeout: config.idleTimeoutMs,
    keepAliveTimeout: config.idleTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    http: { connectionsCheckingInterval: Math.max(100, Math.min(config.headersTimeoutMs / 4, 5000)), headersTimeout: config.headersTimeoutMs }
  }
}
