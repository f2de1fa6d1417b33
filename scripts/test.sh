#!/usr/bin/env bash
# Runs every palisade test on a machine that has only the Rust toolchain.
# It installs what the tests need first (redis-server for the Redis backend).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "==> installing redis-server (needed by palisade-redis tests)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server >/dev/null
    # Debian starts a system redis on 6379; the tests start their own on free ports.
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

echo "==> cargo test --workspace --all-features"
cargo test --workspace --all-features --no-fail-fast "$@"
