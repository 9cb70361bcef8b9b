#!/usr/bin/env bash
# Debian packages the suite needs as real peers: a stock Postgres 15 (no
# pgvector, for the "external Postgres without pgvector" test).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests need Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the package starts a system cluster we do not use
  service postgresql stop >/dev/null 2>&1 || true
fi
