#!/usr/bin/env bash
# Builds the static Linux binary, target/x86_64-unknown-linux-musl/release/onionstream: no
# dynamic loader, no shared library; it runs on any x86_64 Linux kernel (docs/INSTALL.md).
# Needs the musl target (`rustup target add x86_64-unknown-linux-musl`) and a C compiler for
# it (Debian: apt-get install musl-tools), for the bundled SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build-static: the $target target is missing: rustup target add $target" >&2
  exit 1
fi
if ! command -v musl-gcc >/dev/null; then
  echo "build-static: no musl C compiler: apt-get install musl-tools" >&2
  exit 1
fi
# Stripped: the release profile keeps line tables for backtraces, which a download need not carry.
CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --target "$target" -p onionstream
echo "target/$target/release/onionstream"
