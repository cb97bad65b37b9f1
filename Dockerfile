# mcp-gateway container image.
#   docker build -t mcp-gateway .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 -v ./gateway.yaml:/etc/mcp-gateway/config.yaml:ro \
#     -e MCPGW_CONFIG=/etc/mcp-gateway/config.yaml mcp-gateway
# Three stages: `build` compiles TypeScript, `deps` installs production dependencies only, and the
# runtime stage copies just those two results onto a clean base: no compiler, TypeScript or @types.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no install script runs (the `node` devDependency would download a second runtime).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="mcp-gateway" \
      org.opencontainers.image.description="Production MCP gateway: Streamable HTTP front door, least-connections upstream pools, sessions any replica can serve." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"

# tini as PID 1: forwards SIGTERM to the gateway (which drains, then exits 0) and reaps the
# orphans stdio upstreams may leave. yarn and corepack are not needed; npm stays for stdio
# upstreams started with npx.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && rm -rf /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg /usr/local/bin/corepack /usr/local/lib/node_modules/corepack

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs

# In a container the listeners must face the network; MCPGW_* variables win over the config file.
ENV NODE_ENV=production \
    HOME=/tmp \
    MCPGW_LISTEN_HOST=0.0.0.0 \
    MCPGW_METRICS_HOST=0.0.0.0

# A numeric user, so `runAsNonRoot` can verify it; /app stays root-owned and read-only to it.
USER 10001:10001
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli.js"]
