#!/usr/bin/env bash
# Install Debian's `chromium` and `chromium-driver` (headless browser for the HTML report test and the human-study
# browser tests, driven through chromedriver by Selenium) unless both are already on PATH.
# Idempotent: a second run with both present does nothing. Needs root (CI containers run as root).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium), $(command -v chromedriver)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "installed: $(command -v chromium), $(command -v chromedriver)"
