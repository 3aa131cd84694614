#!/usr/bin/env bash
# What the test suite needs beyond Python packages, started or installed when missing:
# PostgreSQL on 127.0.0.1:5432 (the store tests use the real server) and Debian's
# chromium (the report and dashboard tests render pages in it). `make test` runs this,
# so a fresh clone needs nothing else.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
        for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    fi
    pg_isready -h 127.0.0.1 -p 5432 -q || {
        echo "PostgreSQL is not running on 127.0.0.1:5432 and could not be started here;" \
             "start it (trust authentication, database 'test') and run make test again" >&2
        exit 1
    }
fi

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    else
        echo "chromium is missing: sudo apt-get install -y chromium, then run make test again" >&2
        exit 1
    fi
fi
