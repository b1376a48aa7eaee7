#!/usr/bin/env bash
# Cross-compiles onionstream for Windows (x86_64-pc-windows-gnu) with mingw-w64 and prints the
# path of onionstream.exe. Installs nothing: it checks that the Rust target and the mingw C
# compiler (for the bundled SQLite) are there and says how to get them if not. Fails on any
# warning of ours. What works on Windows and what does not: README.md, "Windows".
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
CC_WIN=x86_64-w64-mingw32-gcc

missing=0
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "build-windows: the Rust target $TARGET is not installed: rustup target add $TARGET" >&2
    missing=1
  fi
elif ! rustc --print target-libdir --target "$TARGET" >/dev/null 2>&1 \
  || [ ! -d "$(rustc --print target-libdir --target "$TARGET")" ]; then
  echo "build-windows: no Rust standard library for $TARGET (install it with rustup: rustup target add $TARGET)" >&2
  missing=1
fi
if ! command -v "$CC_WIN" >/dev/null 2>&1; then
  echo "build-windows: the mingw-w64 C compiler $CC_WIN is missing (Debian/Ubuntu: apt-get install gcc-mingw-w64-x86-64)" >&2
  missing=1
fi
if [ "$missing" -ne 0 ]; then
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Stripped: the release profile keeps line tables for backtraces, which a download need not carry.
if ! CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --target "$TARGET" -p onionstream "$@" 2>&1 | tee "$log" >&2; then
  echo "build-windows: the build failed" >&2
  exit 1
fi
# Dependencies' warnings are capped by cargo, so any warning left is ours.
if grep -q '^warning' "$log"; then
  echo "build-windows: the build has warnings (above); the Windows build must have none" >&2
  exit 1
fi

exe="target/$TARGET/release/onionstream.exe"
[ -f "$exe" ] || { echo "build-windows: $exe was not made" >&2; exit 1; }
echo "$(pwd)/$exe"
