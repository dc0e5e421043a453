#!/usr/bin/env bash
# Install the Debian packages the tests and the lab use when a command they provide is missing:
# softflowd (softflowd, softflowctl), pmacct (nfacctd with its Kafka plugin), iproute2 (ip, tc),
# openssl, prometheus (prometheus, promtool), prometheus-alertmanager and docker-compose (its
# `config` check of docker-compose.yml needs no Docker engine). Idempotent: with every
# command present it installs nothing. Needs root to install (the lab needs root anyway).
# The packages' services are not started: the tests start what they need on loopback.
set -euo pipefail

declare -A package_of=(
  [softflowd]=softflowd [softflowctl]=softflowd [nfacctd]=pmacct
  [ip]=iproute2 [tc]=iproute2 [openssl]=openssl
  [prometheus]=prometheus [promtool]=prometheus [prometheus-alertmanager]=prometheus-alertmanager
  [docker-compose]=docker-compose
)
missing=()
for cmd in "${!package_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 \
    || missing+=("${package_of[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "debian/install.sh: missing Debian packages: ${packages[*]}; run as root or install them" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "debian/install.sh: missing packages ${packages[*]} and no apt-get here" >&2
  exit 1
fi
echo "debian/install.sh: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
fi
nfacctd -V 2>&1 | grep -q -- '--enable-kafka' \
  || { echo "debian/install.sh: this nfacctd was built without its Kafka plugin" >&2; exit 1; }
