# Two images from one Dockerfile, each with only its runtime files (scripts/image-files.ts):
#   docker build -t ghcr.io/tsmesh/tsmesh:0.1.0 .                                    # the sidecar (default target)
#   docker build --target control-plane -t ghcr.io/tsmesh/tsmesh-control-plane:0.1.0 .
# - sidecar: `tsmesh proxy` (UID 1337, read-only root) and `tsmesh init` (root with
#   NET_ADMIN/NET_RAW); no control-plane code and no Kubernetes client. The injector injects
#   this image.
# - control-plane: `tsmesh injector` (UID 65532, deploy/injector), `tsmesh inject`, `tsmesh check`.
# Node.js 24 runs the TypeScript sources directly (type stripping): there is no build step.
# scripts/image-smoke.sh checks a built image; scripts/node-base.sh makes the Node base image
# where no registry is reachable.
ARG NODE_IMAGE=node:24-bookworm-slim

# Production dependencies, then each target's runtime files: no tests, test helpers, type
# declarations, source maps or docs; the sidecar's node_modules without the control plane's
# packages.
FROM ${NODE_IMAGE} AS files
WORKDIR /project
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY injector ./injector
COPY scripts/image-files.ts scripts/warm-compile-cache.ts ./scripts/
RUN node scripts/image-files.ts sidecar /out/sidecar \
 && node scripts/image-files.ts control-plane /out/control-plane

# Node's compile cache is made at build time in both images: the sources stripped of their
# types and V8's code cache, so a container starts without compiling them or loading the type
# stripper (faster, smaller starts; bin/tsmesh.js turns it on). Node keeps one folder per UID,
# so it is made as each UID the manifests run the image as. Read-only at run time; a changed
# file is compiled as usual.
FROM ${NODE_IMAGE} AS control-plane
WORKDIR /app
ENV NODE_ENV=production NODE_COMPILE_CACHE=/app/.compile-cache
COPY --from=files /out/control-plane/ /app/
# UID 65532: the injector (deploy/injector); 0: `tsmesh inject` and `check` run as root.
RUN --mount=type=bind,from=files,source=/project/scripts,target=/tmp/scripts \
    mkdir -m 1777 "$NODE_COMPILE_CACHE" \
 && node /tmp/scripts/warm-compile-cache.ts /app \
 && setpriv --reuid=65532 --regid=65532 --clear-groups node /tmp/scripts/warm-compile-cache.ts /app \
 && chmod 755 "$NODE_COMPILE_CACHE"
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["node", "/app/bin/tsmesh.js"]
CMD ["--help"]

FROM ${NODE_IMAGE} AS sidecar
# iptables (nft and legacy backends) for the init container; iproute2 for diagnostics.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
WORKDIR /app
ENV NODE_ENV=production NODE_COMPILE_CACHE=/app/.compile-cache
COPY --from=files /out/sidecar/ /app/
# UID 1337: the proxy; 0: the init container.
RUN --mount=type=bind,from=files,source=/project/scripts,target=/tmp/scripts \
    mkdir -m 1777 "$NODE_COMPILE_CACHE" \
 && node /tmp/scripts/warm-compile-cache.ts /app \
 && setpriv --reuid=1337 --regid=1337 --clear-groups node /tmp/scripts/warm-compile-cache.ts /app \
 && chmod 755 "$NODE_COMPILE_CACHE"
# The proxy runs as UID 1337, which the iptables rules exempt from redirection. The init
# container overrides this with runAsUser: 0 and the NET_ADMIN/NET_RAW capabilities.
USER 1337:1337
EXPOSE 15001 15006 15020
ENTRYPOINT ["node", "/app/bin/tsmesh.js"]
CMD ["--help"]
