#!/usr/bin/env bash
# Install Debian's `chromium` (headless browser for the HTML report test) unless it is already on PATH.
# Idempotent: a second run with chromium present does nothing. Needs root (CI containers run as root).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "installed: $(command -v chromium)"
