#!/usr/bin/env bash
# Configures (once) and builds waitroom out of tree, with warnings as errors:
#   scripts/build.sh              -> build/
#   scripts/build.sh --sanitize   -> build-asan/ (AddressSanitizer + UBSan)
# Prints the build folder's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
dir=build; flags=(--enable-werror)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan; flags+=(--enable-sanitizers)
fi
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
  autoreconf -fi >/dev/null
fi
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$src/configure" -nt Makefile ]; then
  "$src/configure" -q "${flags[@]}"
fi
make -s -j"$(nproc)" >&2
echo "$src/$dir"
