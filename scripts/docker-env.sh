#!/usr/bin/env bash
# A private Docker engine and the local base images the deployment tests need, made without any
# image registry: only Debian's packages and the npm registry are reachable on our machines.
#
#   scripts/docker-env.sh start [DIR]  start an engine whose state lives in DIR (default: a new
#                                      temp dir), load the base images into it, and print
#                                      DOCKER_HOST=… and MCPGW_DOCKER_DIR=… lines. Idempotent:
#                                      an engine already running in DIR is reused.
#   scripts/docker-env.sh stop DIR     stop that engine (by its pid) and remove DIR.
#   scripts/docker-env.sh images       only make the cached base images.
#
# The base images are built once with debootstrap and cached as tarballs in
# ${MCPGW_CACHE_DIR:-~/.cache/mcp-gateway}/images, so later runs import them in seconds:
#   node:24-bookworm-slim        Debian bookworm minbase + the Node 24 binary of the `node` npm
#                                package + npm + CA bundle. The Dockerfile keeps its ordinary
#                                `FROM node:24-bookworm-slim`; the engine finds it and never pulls.
#   mcpgw-local/redis:bookworm   Debian's redis-server (compose and the replica test)
#   mcpgw-local/nginx:bookworm   Debian's nginx (the compose load balancer)
#
# Exit code 77 means "cannot run on this machine" (not root, no apt); the tests skip loudly on it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MCPGW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-gateway}
SUITE=bookworm
RECIPE=1 # bump when the way images are made changes, to invalidate the cache

log() { printf 'docker-env: %s\n' "$*" >&2; }
cannot() {
  log "cannot run here: $*"
  exit 77
}

as_root() {
  [ "$(id -u)" = 0 ] || cannot "$1 needs root"
}

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] && return
  as_root "installing ${missing[*]}"
  command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The Debian mirror the machine's apt already uses.
mirror() {
  local m=""
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

node_binary() {
  local bin="$REPO/node_modules/node/bin/node"
  [ -x "$bin" ] || cannot "$bin is missing: run npm ci first"
  echo "$bin"
}

# Makes $CACHE/images/<name>.tar from a debootstrap root; $2 = extra Debian packages,
# $3 = a function that finishes the root.
make_rootfs() {
  local name=$1 include=$2 finish=$3 out="$CACHE/images/$1.tar"
  [ -s "$out" ] && return
  as_root "debootstrap"
  mkdir -p "$CACHE/images"
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-rootfs.XXXXXX")
  log "making $name with debootstrap (once; cached in $CACHE/images)"
  debootstrap --variant=minbase ${include:+--include="$include"} "$SUITE" "$root" "$(mirror)" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    exit 1
  }
  "$finish" "$root"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/*
  # A private temp name: two first runs at once must not interleave their writes.
  tar -C "$root" --numeric-owner -cf "$out.$$.tmp" .
  mv "$out.$$.tmp" "$out"
  rm -rf "$root" "$root.log"
}

finish_node() {
  local root=$1 npm_dir
  install -m 0755 "$(node_binary)" "$root/usr/local/bin/node"
  npm_dir="$(npm root -g)/npm"
  [ -f "$npm_dir/package.json" ] || cannot "no npm found at $npm_dir to copy into the base image"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
}
finish_none() { :; }

node_image_name() {
  echo "node-$("$(node_binary)" -v)-$SUITE-r$RECIPE"
}

make_images() {
  # In parallel: a first run spends its time waiting on the mirror.
  local pids=() pid failed=0
  make_rootfs "$(node_image_name)" "" finish_node & pids+=($!)
  make_rootfs "redis-$SUITE-r$RECIPE" redis-server finish_none & pids+=($!)
  make_rootfs "nginx-$SUITE-r$RECIPE" nginx finish_none & pids+=($!)
  for pid in "${pids[@]}"; do wait "$pid" || failed=$?; done
  [ "$failed" = 0 ] || exit "$failed"
}

PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

import_image() { # tar tag changes…
  local tar=$1 tag=$2
  shift 2
  if docker image inspect "$tag" >/dev/null 2>&1; then return; fi
  local args=(-c "$PATH_ENV")
  for c in "$@"; do args+=(-c "$c"); done
  docker import "${args[@]}" "$CACHE/images/$tar.tar" "$tag" >/dev/null
  log "imported $tag"
}

engine_up() {
  local dir=$1
  [ -f "$dir/dockerd.pid" ] && kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null && docker info >/dev/null 2>&1
}

start() {
  ensure_packages
  as_root "dockerd"
  make_images
  local dir=${1:-}
  [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-docker.XXXXXX")
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  export DOCKER_HOST="unix://$dir/docker.sock"
  if ! engine_up "$dir"; then
    log "starting dockerd in $dir (no bridge, no iptables: containers use --network host)"
    # Started here: stopped again if anything below fails, so no engine outlives a failed start.
    trap "stop '$dir'" EXIT
    # setsid + closed stdio: the engine outlives this script without holding its caller's pipes.
    setsid dockerd --iptables=false --ip6tables=false --bridge=none \
      --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
      -H "$DOCKER_HOST" </dev/null >"$dir/dockerd.log" 2>&1 &
    local i
    for i in $(seq 1 150); do
      docker info >/dev/null 2>&1 && break
      [ "$i" = 150 ] && { tail -20 "$dir/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
      sleep 0.2
    done
  fi
  import_image "$(node_image_name)" node:24-bookworm-slim 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' 'CMD ["node"]'
  import_image "redis-$SUITE-r$RECIPE" mcpgw-local/redis:bookworm 'CMD ["redis-server"]'
  import_image "nginx-$SUITE-r$RECIPE" mcpgw-local/nginx:bookworm 'CMD ["nginx", "-g", "daemon off;"]'
  trap - EXIT
  echo "DOCKER_HOST=$DOCKER_HOST"
  echo "MCPGW_DOCKER_DIR=$dir"
}

stop() {
  local dir=${1:?usage: docker-env.sh stop DIR}
  [ -d "$dir" ] || return 0
  if [ -f "$dir/dockerd.pid" ]; then
    local pid i
    pid=$(cat "$dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd $pid"
      kill -TERM "$pid"
      for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
  fi
  # Overlay mounts a killed engine may leave behind, deepest first.
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  images)
    ensure_packages
    make_images
    ;;
  *)
    echo "usage: $0 start [DIR] | stop DIR | images" >&2
    exit 2
    ;;
esac
