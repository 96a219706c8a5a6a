import neostandard, { plugins } from 'neostandard'

// Imports run one way: routes → src (plugins → services → codecs) → native. A layer that reaches up fails lint.
// Flat config keeps only the last options of a rule for a file, so each group lists every rule that applies to it.
const forbid = (files, rules, ignores = []) => ({
  files,
  ignores,
  rules: { 'no-restricted-imports': ['error', { patterns: rules.map(([regex, message]) => ({ regex, message })) }] }
})
const HTTP = ['^(fastify|@fastify/.*|fastify-plugin)$', 'this layer knows nothing of HTTP; take a Logger, throw from src/errors.ts']
const ROUTES = ['(^|/)routes/', 'src/ never imports routes/: move what both need into src/']
const SERVICES = ['src/segments', 'src/journal', 'src/transfer', 'src/observability'].map((d) => `${d}/**/*.ts`)

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'clients/**', 'test-artifacts/**', 'bench/out/**'] }),
  {
    files: ['**/*.ts'],
    plugins: { '@typescript-eslint': plugins['typescript-eslint'].plugin },
    rules: { '@typescript-eslint/no-explicit-any': 'error' }
  },
  forbid(['routes/**/*.ts'], [['(^|/)native/', 'routes call the services in src/, never libc: add a method to the service']]),
  // app.ts is where the layers are put together: the one file of src/ that names the routes.
  forbid(['src/**/*.ts'], [ROUTES], ['src/app.ts', ...SERVICES, 'src/codecs/**']),
  forbid(SERVICES, [ROUTES, ['^\\.\\./(plugins|http)/', 'services do not reach up into plugins or HTTP helpers'], HTTP]),
  forbid(['src/codecs/**/*.ts'], [
    ['^\\.\\./(?!codecs/)', 'codecs are leaves: they import nothing of the service (no registry, no errors table, no native), only each other'],
    HTTP
  ]),
  forbid(['native/**/*.ts'], [['(^|/)(src|routes)/', 'native/ is the bottom layer: it imports only node: modules and its own files'], HTTP])
]
