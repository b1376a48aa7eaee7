#!/usr/bin/env bash
# Builds the Debian package, target/debian/onionstream_VERSION-1_ARCH.deb (docs/INSTALL.md):
# the release binary, the systemd unit (packaging/debian/onionstream.service), the maintainer
# scripts beside it, the docs, and /etc/onionstream/onionstream.toml: the documented config
# (onionstream.toml) with the packaged settings. Needs cargo-deb (`cargo install cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p onionstream

# The packaged config: every key as documented, but the service's data directory and the
# onion service on (a package is for publishing; `[onion] enabled = false` turns it off).

awk '
  BEGIN { section = ""; done_dir = 0; done_onion = 0 }
  /^\[/ { section = $0 }
  section == "" && /^data_dir = ""$/ {
    print "data_dir = \"/var/lib/onionstream\""; done_dir = 1; next
  }
  section == "[onion]" && /^enabled = false$/ {
    print "enabled = true"; done_onion = 1; next
  }
  { print }
  END { if (!done_dir || !done_onion) { print "build-deb: onionstream.toml changed shape" > "/dev/stderr"; exit 1 } }
' onionstream.toml > target/release/onionstream.toml.body
{
  echo "# onionstream's settings as the Debian package installs them: every key as documented in"
  echo "# /usr/share/doc/onionstream/README.md, with two packaged values: data_dir is the"
  echo "# service's state directory, and [onion] enabled = true publishes the site on Tor."
  echo "# After a change: systemctl restart onionstream"
  echo "#"
  cat target/release/onionstream.toml.body
} > target/release/onionstream.toml
rm target/release/onionstream.toml.body
# The packaged config must be one the binary takes.
./target/release/onionstream --config target/release/onionstream.toml print-config >/dev/null

cargo deb --no-build --locked --strip -p onionstream "$@"
