#!/usr/bin/env bash
# The release, checked as a user gets it (CI runs this after the test suite; docs/INSTALL.md):
#  1. the Debian package builds, installs (its own user, a private state directory, the config
#     readable by that group only), its unit passes `systemd-analyze verify`, the unit's own
#     ExecStart as the unit's user serves the page and 10 s of /stream.mp4 that ffmpeg decodes,
#     `onionstream ctl` works through `runuser -u onionstream` (as `sudo -u` would), and a purge
#     leaves nothing behind;
#  2. the static (musl) binary has no dynamic loader and no library, and serves the demo from
#     an empty root directory holding nothing but itself;
#  3. the Windows build cross-compiles with no warning, and the code type-checks for macOS.
# Needs root (apt, chroot, network namespaces). The servers run in network namespaces this
# script makes, with loopback only: the packaged config publishes an onion service, and its tor
# can reach nothing from there. Prints how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
step() { echo "== $* (at $(( $(date +%s) - start )) s)"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Serves from inside a loopback-only network namespace: runs "$@" (a server listening on
# 127.0.0.1:8080) there, then fetches the page and 10 s of the stream into $2-named files.
# Usage: serve_and_fetch OUT_DIR COMMAND...
serve_and_fetch() {
  local out=$1; shift
  unshare --net bash -s "$out" "$@" <<'INNER'
set -euo pipefail
out=$1; shift
ip link set lo up
"$@" > "$out/server.log" 2>&1 &
pid=$!
# Stopped however this script ends (a server left running would outlive the namespace).
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  if curl -sf -o "$out/page.html" http://127.0.0.1:8080/; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.2
done
[ -s "$out/page.html" ] || { echo "no page within 30 s" >&2; cat "$out/server.log" >&2; exit 1; }
# An endless response: curl stops it after 10 s (exit 28).
curl -s --max-time 10 -o "$out/stream.mp4" http://127.0.0.1:8080/stream.mp4 || [ $? = 28 ]
if [ -n "${CTL_AS:-}" ]; then
  runuser -u "$CTL_AS" -- /usr/bin/onionstream --config "$CTL_CONFIG" ctl title show > "$out/ctl.txt"
fi
INNER
}

check_stream() {
  local out=$1
  grep -q "<video" "$out/page.html" || fail "the page has no video: $out/page.html"
  local size; size=$(stat -c %s "$out/stream.mp4")
  [ "$size" -gt 100000 ] || fail "10 s of /stream.mp4 was only $size bytes"
  ffmpeg -v error -i "$out/stream.mp4" -f null - || fail "ffmpeg cannot decode $out/stream.mp4"
  echo "   page served; 10 s of /stream.mp4: $size bytes, decodes"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

# ---- 1. The Debian package ----
step "building the Debian package"
bash packaging/build-deb.sh >/dev/null
deb=$(ls -t target/debian/onionstream_*.deb | head -1)
echo "   $deb ($(stat -c %s "$deb") bytes)"
step "installing it"
apt-get install -y -qq "./$deb" >/dev/null
unit=/lib/systemd/system/onionstream.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/onionstream.service
[ -f "$unit" ] || fail "no systemd unit installed"
id onionstream >/dev/null || fail "no onionstream user"
[ "$(stat -c '%U %a' /var/lib/onionstream)" = "onionstream 700" ] \
  || fail "/var/lib/onionstream is $(stat -c '%U %a' /var/lib/onionstream)"
[ "$(stat -c '%U:%G %a' /etc/onionstream/onionstream.toml)" = "root:onionstream 640" ] \
  || fail "the config is $(stat -c '%U:%G %a' /etc/onionstream/onionstream.toml)"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
  echo "   systemd-analyze: exposure $(systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -1 || true)"
fi
step "running the unit's ExecStart as its user (systemd is not PID 1 here)"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
unit_user=$(sed -n 's/^User=//p' "$unit")
mkdir -p "$work/deb" && chmod 0777 "$work/deb"
# shellcheck disable=SC2086 # ExecStart is a command line
(cd /var/lib/onionstream && export CTL_AS=$unit_user CTL_CONFIG=/etc/onionstream/onionstream.toml \
  && serve_and_fetch "$work/deb" runuser -u "$unit_user" -- $exec_start)
check_stream "$work/deb"
[ "$(cat "$work/deb/ctl.txt")" != "" ] || fail "onionstream ctl as $unit_user printed nothing"
echo "   ctl as $unit_user: $(cat "$work/deb/ctl.txt")"
grep -q "tor" "$work/deb/server.log" || fail "the packaged config did not start the onion service"
step "purging the package"
apt-get purge -y -qq onionstream >/dev/null
for gone in /usr/bin/onionstream /etc/onionstream /var/lib/onionstream "$unit"; do
  [ ! -e "$gone" ] || fail "$gone is left after purge"
done
! id onionstream >/dev/null 2>&1 || fail "the onionstream user is left after purge"

# ---- 2. The static binary ----
step "building the static (musl) binary"
bash packaging/build-static.sh >/dev/null
bin=target/x86_64-unknown-linux-musl/release/onionstream
# (Through files: under pipefail, `grep -q` ending a pipe early would fail its writer.)
readelf -l "$bin" > "$work/headers.txt"
readelf -d "$bin" > "$work/dynamic.txt" 2>&1 || true
! grep -q "Requesting program interpreter" "$work/headers.txt" || fail "$bin asks for a dynamic loader"
! grep -q NEEDED "$work/dynamic.txt" || fail "$bin needs shared libraries"
echo "   $bin: $(stat -c %s "$bin") bytes, no interpreter, no shared library"
step "serving the demo from an empty root holding only the binary"
root="$work/root"
mkdir -p "$root/data" "$work/static" && chmod 0777 "$work/static"
cp "$bin" "$root/onionstream"
serve_and_fetch "$work/static" chroot "$root" /onionstream --data-dir /data --listen 127.0.0.1:8080
check_stream "$work/static"

# ---- 3. Other systems: it builds for them ----
step "cross-compiling for Windows"
exe=$(bash packaging/build-windows.sh 2>"$work/windows.log" | tail -1) \
  || { cat "$work/windows.log" >&2; fail "the Windows build"; }
echo "   $exe ($(stat -c %s "$exe") bytes)"
step "type-checking for macOS"
bash packaging/check-macos.sh 2>"$work/macos.log" >/dev/null \
  || { cat "$work/macos.log" >&2; fail "the macOS check"; }
echo "   onionstream type-checks for x86_64-apple-darwin"

step "done"
