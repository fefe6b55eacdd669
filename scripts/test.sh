#!/usr/bin/env bash
# Set up (a virtual environment with everything the tests need) and run the whole test suite.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# The clinician app's browser tests drive Debian's Chromium headless through Playwright;
# the browser comes from Debian's packages, never from a download by the test tool.
if [ -z "${TWIN_CDS_SKIP_BROWSER:-}" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
    fi
    export TWIN_CDS_REQUIRE_BROWSER=1
fi
exec .venv/bin/python -m pytest "$@"
