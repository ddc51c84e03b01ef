#!/usr/bin/env bash
# Installs what podnet needs on a Debian 12 machine, then builds it. Safe to run again: each
# step runs only when its result is missing or stale. Called by `npm start`, `npm test`, CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the node's own data plane and the tools the tests and benchmarks drive.
# (command to look for = package that brings it)
declare -A PKGS=(
  [ip]=iproute2 [nft]=nftables [iptables]=iptables [conntrack]=conntrack [etcd]=etcd-server
  [/usr/lib/cni/bridge]=containernetworking-plugins [podman]=podman [runc]=runc [ctr]=containerd
  [iperf3]=iperf3 [dig]=bind9-dnsutils [dnsperf]=dnsperf [nsenter]=util-linux [nc]=netcat-openbsd
  [ping]=iputils-ping [ethtool]=ethtool [ps]=procps [python3]=python3 [curl]=curl [arping]=iputils-arping
  # The C compiler and C library headers for the plugins' native shim (native/cni-shim.c).
  [cc]=gcc [/usr/include/stdio.h]=libc6-dev
)
missing=()
for cmd in "${!PKGS[@]}"; do
  if [[ "$cmd" == /* ]]; then [[ -e "$cmd" ]] || missing+=("${PKGS[$cmd]}")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKGS[$cmd]}"); fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "podnet setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "podnet setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js 24 comes from the npm registry as a dev dependency (package `node`), so the
# machine's own Node (20 on Debian 12 images) is only used to run npm itself.
if [[ ! -x node_modules/.bin/node || ! -d node_modules/esbuild || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "podnet setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
NODE=node_modules/.bin/node

# Build when any source is newer than the newest artefact.
stamp=dist/cni-bin/podnet-ipam
if [[ ! -e "$stamp" || -n "$(find src scripts native package.json -newer "$stamp" -type f -print -quit)" ]]; then
  echo "podnet setup: building" >&2
  "$NODE" scripts/build.ts >/dev/null
fi
