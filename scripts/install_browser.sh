#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is there for tests/test_browser.py.
#
# The browser test drives JupyterLab with Playwright's Python client pointed at the system
# Chromium (/usr/bin/chromium). We never run `playwright install`: it downloads a browser build
# of its own, which fails where only package registries are reachable. This script installs
# Debian's `chromium` package when it is missing and we may (root, or passwordless sudo); it never
# fails `make test`: where it cannot install, it says why and the browser test skips itself with
# the same reason.
set -uo pipefail

CHROMIUM="${DIFFEDIT_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: $CHROMIUM is missing and there is no apt-get here: the browser test will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser: $CHROMIUM is missing and we are not root (run: sudo apt-get install -y chromium): the browser test will be skipped" >&2
        exit 0
    fi
fi
echo "install_browser: installing Debian's chromium (apt-get) ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    echo "install_browser: apt-get could not install chromium: the browser test will be skipped" >&2
fi
exit 0
