#!/usr/bin/env bash
# Makes the image the Dockerfile builds on, node:24-bookworm-slim, without a container
# registry: a Debian bookworm root made by debootstrap (minbase, trimmed as the -slim images
# are), the official Node.js 24 binary of the project's `node` devDependency as
# /usr/local/bin/node, and npm. For machines that cannot pull images; with a registry, the
# Dockerfile pulls the official image instead.
#
#   scripts/node-base.sh [ENGINE]     ENGINE: podman or docker (default: whichever exists)
# Needs root, debootstrap, access to a Debian mirror, and `npm ci` run in the project.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${1:-$(command -v podman || command -v docker || true)}
[[ -n "$engine" ]] || { echo "node-base: neither podman nor docker is installed" >&2; exit 1; }
node=node_modules/node/bin/node
[[ -x "$node" ]] || { echo "node-base: $node missing: run 'npm ci' first" >&2; exit 1; }
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
[[ -f "$npm_dir/package.json" ]] || { echo "node-base: cannot find npm's folder (from $(command -v npm))" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "node-base: debootstrap bookworm into $work/root"
debootstrap --variant=minbase bookworm "$work/root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/* \
  "$work/root"/usr/share/doc/* "$work/root"/usr/share/man/* "$work/root"/usr/share/locale/* "$work/root"/usr/share/info/*
install -m 0755 "$node" "$work/root/usr/local/bin/node"
mkdir -p "$work/root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$work/root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/root/usr/local/bin/npx"
# npm in the build uses the CA bundle npm uses here (a machine behind a TLS-inspecting proxy).
cafile=$(npm config get cafile 2>/dev/null || true)
if [[ -n "$cafile" && "$cafile" != null && -f "$cafile" ]]; then
  mkdir -p "$work/root/usr/local/etc"
  cp "$cafile" "$work/root/usr/local/etc/npm-ca.crt"
  echo 'cafile=/usr/local/etc/npm-ca.crt' >"$work/root/usr/local/etc/npmrc"
fi
version=$("$node" --version)
tar -C "$work/root" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${version#v}" --change 'CMD ["node"]' \
  - docker.io/library/node:24-bookworm-slim >/dev/null
echo "node-base: made docker.io/library/node:24-bookworm-slim (Node $version)"
