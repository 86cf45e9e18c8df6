#!/usr/bin/env bash
# One-time, idempotent set-up on Debian 12/13 (as root): from Debian, QGIS's Python bindings and
# providers, the QGIS desktop with qgis_process (package qgis, no recommends), GDAL and its Python
# bindings, venv/pip, Xvfb; then the engine's virtualenv in .venv (with system site packages, so
# GDAL and QGIS bindings stay visible) with the engine installed in editable mode. Quick when
# already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-qgis qgis-providers qgis gdal-bin python3-gdal python3-venv python3-pip xvfb xauth)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

stamp=".venv/.misr-setup-$(cat engine/pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing the engine into .venv"
    # Keep Debian's numpy (GDAL's bindings are compiled against it).
    constraints=.venv/constraints.txt
    /usr/bin/python3 -c 'import numpy; print("numpy==" + numpy.__version__)' > "$constraints"
    pip=(.venv/bin/python -m pip install -q --disable-pip-version-check -c "$constraints")
    # torch first and pinned: on this project's machines the CPU wheel of 2.13.0 is served
    # locally; an unpinned torch would pull gigabytes of CUDA libraries.
    .venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "torch==2.13.0"
    # the engine was once installed from the repository root as "qgis-misr": replace it
    .venv/bin/python -m pip uninstall -y -q qgis-misr 2>/dev/null || true
    "${pip[@]}" -e './engine[test]'
    rm -f .venv/.misr-setup-*
    touch "$stamp"
fi
