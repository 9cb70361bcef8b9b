#!/usr/bin/env bash
# Debian packages the suite needs as real peers: a stock Postgres 15 (no
# pgvector, for the "external Postgres without pgvector" test) and Dovecot
# (the IMAP server of the email channel's tests, run from a temp dir), and
# Chromium (the browser tests of the inbox and the widget, headless).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests need Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the packages start system instances we do not use (the tests run their own)
  service postgresql stop >/dev/null 2>&1 || true
  service dovecot stop >/dev/null 2>&1 || true
  if [ -e /usr/sbin/dovecot ]; then
    systemctl disable dovecot >/dev/null 2>&1 || update-rc.d dovecot disable >/dev/null 2>&1 || true
  fi
fi
