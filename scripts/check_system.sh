#!/usr/bin/env bash
# Checks the system libraries hiclr's dependencies need, with a clear message instead of a failure
# deep inside an import. open3d needs libusb-1.0 (Debian/Ubuntu: libusb-1.0-0).
# Run as root on a machine with apt-get, it installs what is missing (as CI does); otherwise it
# prints the one command to run and fails.
set -u
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1" || ls /usr/lib/*/"$1"* /usr/lib/"$1"* >/dev/null 2>&1; }
missing=()
have_lib 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "hiclr: installing missing system libraries: ${missing[*]}" >&2
  if { apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }; } >&2; then
    exit 0
  fi
  echo "hiclr: could not install ${missing[*]}; run: $cmd" >&2
  exit 1
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo "
echo "hiclr: missing system libraries: ${missing[*]} (open3d needs them)" >&2
if command -v apt-get >/dev/null 2>&1; then
  echo "  run: ${sudo}apt-get update && ${sudo}$cmd" >&2
else
  echo "  install the package providing libusb-1.0.so.0 (e.g. 'dnf install libusbx' or 'brew install libusb')" >&2
fi
exit 1
