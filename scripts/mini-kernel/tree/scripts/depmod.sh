#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs depmod for `make modules_install`, as kbuild's scripts/depmod.sh does: skipped (with a warning) when
# System.map is missing or $DEPMOD is not found (DEPMOD=/doesnt/exist is how a PKGBUILD skips it).
# usage: depmod.sh <depmod> <kernelrelease>
set -eu
if [ $# -ne 2 ]; then
  echo "usage: $0 <depmod> <kernelrelease>" >&2
  exit 1
fi
DEPMOD=$1
KERNELRELEASE=$2
if ! test -r System.map; then
  echo "Warning: modules_install: missing 'System.map' file. Skipping depmod." >&2
  exit 0
fi
PATH="$PATH:/sbin"
if [ -z "$(command -v "$DEPMOD")" ]; then
  echo "Warning: 'make modules_install' requires $DEPMOD. Please install it." >&2
  echo "This is probably in the kmod package." >&2
  exit 0
fi
set -- -ae -F System.map
if [ -n "${INSTALL_MOD_PATH:-}" ]; then
  set -- "$@" -b "$INSTALL_MOD_PATH"
fi
[ "${quiet:-}" = silent_ ] || echo "  DEPMOD  ${INSTALL_MOD_PATH:-}/lib/modules/$KERNELRELEASE"
exec "$DEPMOD" "$@" "$KERNELRELEASE"
