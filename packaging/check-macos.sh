#!/usr/bin/env bash
# Type-checks onionstream for macOS (x86_64-apple-darwin) from Linux: `cargo check`, so every
# cfg of ours is compiled for macOS (unix sockets, kqueue file watching, no prctl, no
# malloc_trim) and any Linux-only API outside a cfg fails here. Nothing is linked, so there is
# no macOS SDK: C code (the bundled SQLite, BLAKE3's assembly) goes to a stand-in compiler that
# preprocesses with gcc (so cc-rs sees a GNU compiler) and writes empty objects. This proves
# the Rust compiles, not that a macOS binary works. Installs nothing (needs
# `rustup target add x86_64-apple-darwin` and gcc). Fails on any warning of ours.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-apple-darwin
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "check-macos: the Rust target $TARGET is not installed: rustup target add $TARGET" >&2
  exit 1
fi
command -v gcc >/dev/null || { echo "check-macos: gcc is missing" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/cc" <<'SH'
#!/bin/sh
for a in "$@"; do
  [ "$a" = "-?" ] && exit 1                       # not MSVC
  [ "$a" = "-E" ] && eval "exec gcc -E \"\${$#}\"" # compiler-family detection
done
out=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift;; -o*) out="${1#-o}";; esac
  shift
done
[ -n "$out" ] && exec gcc -c -x c /dev/null -o "$out"
exit 0
SH
chmod +x "$work/cc"

log="$work/log"
if ! env CC_x86_64_apple_darwin="$work/cc" AR_x86_64_apple_darwin=ar SDKROOT=/nonexistent \
  cargo check --locked --target "$TARGET" -p onionstream "$@" 2>&1 | tee "$log" >&2; then
  echo "check-macos: the check failed" >&2
  exit 1
fi
if grep -q '^warning' "$log"; then
  echo "check-macos: warnings (above); the macOS check must have none" >&2
  exit 1
fi
echo "check-macos: onionstream type-checks for $TARGET"
