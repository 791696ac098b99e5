#!/usr/bin/env bash
# Checks the system libraries hiclr's dependencies need, with a clear message instead of a failure
# deep inside an import. open3d needs libusb-1.0 (Debian/Ubuntu: libusb-1.0-0).
set -u
missing=()
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  missing+=(libusb-1.0-0)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "hiclr: missing system libraries: ${missing[*]}" >&2
  echo "  install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
