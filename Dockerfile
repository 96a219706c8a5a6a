# syntax=docker/dockerfile:1
# Build: compile TypeScript with the dev dependencies, then keep only what runs.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY routes ./routes
COPY native ./native
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# Run: the same start command as `npm start` without the build step, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY openapi ./openapi
# The image's `node` user (uid 1000). Segments it creates are owned by it; see SECURITY.md for sharing them.
USER node
EXPOSE 8000
# Segments live in the IPC namespace's /dev/shm: run with --ipc=host (or share it with the clients' containers)
# and --network=host so that loopback clients reach the default 127.0.0.1 bind.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.TENSORSHM_PORT||8000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/server.js"]
