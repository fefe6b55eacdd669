#!/usr/bin/env bash
# Set up and start the demo: installs the `demo` extra into .venv, then runs `twin-cds demo`,
# the one launcher (FHIR server with patients, the service with the app and the auditor
# console, the EHR simulator; ehr_sim/demo.py).
# Usage: scripts/demo.sh [twin-cds demo arguments, e.g. --port 8080 --patients 12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
exec .venv/bin/twin-cds demo "$@"
