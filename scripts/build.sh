#!/usr/bin/env bash
# Configures (once) and builds waitroom in the source tree.
# Extra arguments go to ./configure, e.g. --enable-sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
want="--enable-werror $*"
if [ ! -x configure ]; then
  autoreconf -fi >/dev/null
fi
if [ ! -f Makefile ] || [ "$(cat .configured-with 2>/dev/null)" != "$want" ]; then
  [ -f Makefile ] && make -s distclean >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  ./configure -q $want
  echo "$want" > .configured-with
fi
make -s -j"$(nproc)"
