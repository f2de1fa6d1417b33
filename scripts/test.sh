#!/usr/bin/env bash
# Runs every palisade test on a machine that has only the Rust toolchain.
# It installs what the tests need first:
# - redis-server, for the Redis backend;
# - nginx, for the conformance suite (static files, Range, limit_req, TLS, HTTP/2);
# - httpbin and gunicorn from PyPI, in a virtualenv under target/, for the
#   conformance suite's redirects, statuses, delays, compression and auth.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || missing+=(libnginx-mod-http-echo)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]} (needed by the Redis and conformance tests)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts system services; the tests start their own on free ports.
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi

VENV="${PALISADE_CONFORMANCE_VENV:-$PWD/target/conformance-venv}"
if [ ! -x "$VENV/bin/gunicorn" ] || ! "$VENV/bin/python" -c 'import httpbin, brotli' >/dev/null 2>&1; then
    echo "==> creating $VENV with httpbin and gunicorn (needed by the conformance suite)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check httpbin gunicorn brotli
fi
export PALISADE_CONFORMANCE_VENV="$VENV"

echo "==> cargo test --workspace --all-features"
cargo test --workspace --all-features --no-fail-fast "$@"
