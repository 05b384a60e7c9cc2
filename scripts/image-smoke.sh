#!/usr/bin/env bash
# Checks a built tsmesh image the way Kubernetes runs it, with docker or podman:
#   scripts/image-smoke.sh IMAGE            (npm run image:smoke -- IMAGE)
# The sidecar image (default target): --help; `init --dry-run` as root; `proxy` as UID 1337
# with a read-only root, no capabilities and no privilege escalation becomes ready on
# /healthz/ready; the modules it loads come from the build's compile cache; start-to-ready
# time and idle RSS (printed, not asserted: they depend on the machine); no development files
# and no Kubernetes client. The control-plane image (--target control-plane): --help,
# `inject -f -` as UID 65532 from the compile cache, no development files.
# Exit 0 when every check passes; with neither docker nor podman usable (not installed, or a
# docker client without a daemon) it says so and exits 0: there is nothing to check here.
set -euo pipefail
image=${1:?usage: scripts/image-smoke.sh IMAGE}
# The first engine that answers (CONTAINER_ENGINE names one); a docker client without a
# daemon does not count.
engine= why=()
for candidate in ${CONTAINER_ENGINE:-docker podman}; do
  if ! command -v "$candidate" >/dev/null; then why+=("$candidate is not installed"); continue; fi
  if "$candidate" info >/dev/null 2>&1; then engine=$candidate; break; fi
  why+=("$candidate is installed but does not answer ($candidate info fails)")
done
if [[ -z "$engine" ]]; then
  reasons=$(printf '%s; ' "${why[@]}")
  echo "image-smoke: no container engine to run $image with: ${reasons%; }. Nothing checked."
  exit 0
fi
echo "image-smoke: checking $image with $engine"
run() { "$engine" run --rm --network=none "$@"; }
failed=0
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failed=1; }

# 1. help
if run "$image" --help | grep -q '^Usage: tsmesh <command>'; then pass "--help"; else fail "--help prints no usage"; fi

# What the image holds: the sidecar has `proxy` and no control plane.
if run --entrypoint /bin/sh "$image" -c 'test -d /app/injector'; then target=control-plane; else target=sidecar; fi
echo "image-smoke: $image is the $target image"

# 2. no development files (and, in the sidecar, no control-plane code or Kubernetes client)
dev=$(run --entrypoint /bin/sh "$image" -c 'find /app \( -name "*.d.ts" -o -name "*.d.mts" -o -name "*.d.cts" -o -name "*.map" -o -name "*.test.ts" -o -name "*.md" -o -path /app/injector/testing -o -name testdata -o -path /app/test \) -print | head -20')
[[ -z "$dev" ]] && pass "no development files" || fail "development files in /app: $dev"
if [[ $target == sidecar ]]; then
  extra=$(run --entrypoint /bin/sh "$image" -c 'ls -d /app/node_modules/@kubernetes /app/node_modules/fast-json-patch /app/injector /app/src/demo 2>/dev/null || true')
  [[ -z "$extra" ]] && pass "no control-plane code or Kubernetes client" || fail "control-plane files in the sidecar image: $extra"
fi

# Counts the project's and its dependencies' files (under /app) read from the compile cache and
# those compiled afresh, in NODE_DEBUG_NATIVE=COMPILE_CACHE output (stdin): "HITS MISSES".
cache_counts() {
  awk '/\[compile cache\] reading cache from/ {
    rest = substr($0, index($0, " for ") + 5); split(rest, w, " "); url = w[2]; sub(/\.\.\..*/, "", url)
    if (url !~ /\/app\// || url ~ /\[eval/) next # the probe script itself
    if (/success/) hit[url] = 1; else miss[url] = 1
  } END { for (u in hit) h++; for (u in miss) if (!(u in hit)) { m++; list = list " " u }; printf "%d %d%s\n", h, m, list }'
}
check_cache() { # $1: what, $2: "hits misses"
  local hits misses compiled
  read -r hits misses compiled <<<"$2"
  if ((hits > 50 && misses == 0)); then pass "$1: $hits files from the compile cache, none compiled"
  else fail "$1: $hits files from the compile cache, $misses compiled (the cache is not used for this UID):${compiled:0:400}"; fi
}

if [[ $target == sidecar ]]; then
  # 3. init --dry-run (root, as the init container runs it; no rules are applied)
  if run --user 0 "$image" init --dry-run | grep -q '^\*nat'; then pass "init --dry-run prints the rules"; else fail "init --dry-run"; fi

  # 4. proxy as 1337, read-only root, no capabilities; a registry file (local mode) in a tmpfs
  # because the image has no control plane to talk to. A small Node script in the container
  # starts it, times it to /healthz/ready, and reads its RSS after 5 s idle.
  probe='
    const { spawn } = await import("node:child_process");
    const { readFileSync, writeFileSync } = await import("node:fs");
    writeFileSync("/tmp/registry.yaml", "services: []\npods: []\n");
    const t0 = performance.now();
    const proxy = spawn("node", ["/app/bin/tsmesh.js", "proxy"], { stdio: ["ignore", "ignore", "inherit"] });
    let readyMs;
    for (let i = 0; i < 600 && readyMs === undefined; i++) {
      const ok = await fetch("http://127.0.0.1:15020/healthz/ready").then((r) => r.status === 200, () => false);
      if (ok) readyMs = performance.now() - t0; else await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 5000));
    const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proxy.pid}/status`, "utf8"))?.[1];
    console.log(`uid=${process.getuid()} ready_ms=${readyMs === undefined ? "never" : readyMs.toFixed(0)} idle_rss_kib=${rss}`);
    proxy.kill("SIGTERM");'
  out=$(run --user 1337 --read-only --tmpfs /tmp --cap-drop=ALL --security-opt no-new-privileges \
    -e TSMESH_REGISTRY=/tmp/registry.yaml -e POD_NAME=smoke -e POD_NAMESPACE=default -e POD_IP=127.0.0.1 \
    -e NODE_DEBUG_NATIVE=COMPILE_CACHE --entrypoint node "$image" --input-type=module -e "$probe" 2>&1) || true
  line=$(grep '^uid=' <<<"$out" || true)
  if [[ $line =~ uid=1337\ ready_ms=([0-9]+)\ idle_rss_kib=([0-9]+) ]]; then
    pass "proxy ready as UID 1337 with a read-only root and no capabilities: start-to-ready ${BASH_REMATCH[1]} ms, idle RSS $((BASH_REMATCH[2] / 1024)) MiB"
  else
    fail "proxy did not become ready as UID 1337 with a read-only root: $(tail -5 <<<"$out")"
  fi
  # The proxy's own modules (the probe script itself is not in the cache).
  check_cache "proxy as UID 1337" "$(cache_counts <<<"$out")"
else
  pod='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"app","image":"app"}]}}'
  out=$(echo "$pod" | run -i --user 65532 --read-only -e NODE_DEBUG_NATIVE=COMPILE_CACHE "$image" inject -f - 2>&1) || true
  if grep -q 'tsmesh-proxy' <<<"$out"; then pass "inject -f - as UID 65532 with a read-only root"; else fail "inject -f -: $(tail -5 <<<"$out")"; fi
  check_cache "inject as UID 65532" "$(cache_counts <<<"$out")"
fi

if ((failed)); then echo "image-smoke: $image FAILED"; exit 1; fi
echo "image-smoke: $image passed"
