#!/usr/bin/env bash
# Runs the Windows build (packaging/build-windows.sh) under wine: the demo page, /stream.mp4 and
# the HLS playlist answer on 127.0.0.1, `ctl title show|set` and `ctl events` work over the
# console's loopback transport, a wrong console token is refused, `--onion` is refused with a
# message, and Ctrl-C stops the server in order (control.addr removed). Installs nothing: needs
# wine64 (Debian: apt-get install wine64; about 20 s), curl, python3, and the mingw C compiler.
# Not part of CI: it checks the build under wine, not on Windows.
#
# Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's standard library imports
# (ProcessPrng); this script then puts a stand-in built with mingw (ProcessPrng through
# advapi32's RtlGenRandom) into its own throwaway wine prefix only. Never shipped.
set -euo pipefail
cd "$(dirname "$0")/.."

exe="${1:-target/x86_64-pc-windows-gnu/release/onionstream.exe}"
[ -f "$exe" ] || { echo "windows-smoke: no $exe: run packaging/build-windows.sh" >&2; exit 1; }
wine=""
for w in wine64 /usr/lib/wine/wine64 wine; do
  if command -v "$w" >/dev/null 2>&1; then wine=$(command -v "$w"); break; fi
done
[ -n "$wine" ] || { echo "windows-smoke: wine is not installed (Debian: apt-get install wine64)" >&2; exit 1; }
for tool in curl python3 x86_64-w64-mingw32-gcc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "windows-smoke: $tool is missing" >&2; exit 1; }
done
exe=$(realpath "$exe")

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  WINEPREFIX="$work/prefix" wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export WINEPREFIX="$work/prefix" WINEDEBUG=-all
"$wine" cmd /c exit >/dev/null 2>&1 || true   # creates the prefix
if [ ! -e "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  cat > "$work/shim.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
C
  x86_64-w64-mingw32-gcc -shared -O2 -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    "$work/shim.c" -ladvapi32
fi

data="$work/data"
mkdir -p "$data"
windata="Z:$(echo "$data" | tr / '\\')"
run() { "$wine" "$exe" --data-dir "$windata" "$@"; }
fail() { echo "windows-smoke: FAILED: $*" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$wine" "$exe" --data-dir "$windata" --listen "127.0.0.1:$port" >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 1 150); do grep -q "serving http" "$work/out" 2>/dev/null && break; sleep 0.2; done
grep -q "onionstream: serving http://127.0.0.1:$port/" "$work/out" || { cat "$work/err" >&2; fail "no serving line"; }
sleep 3
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 200 ] || fail "GET /"
bytes=$(curl -s -m 3 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/stream.mp4" || true)
[ "${bytes:-0}" -gt 10000 ] || fail "/stream.mp4 sent ${bytes:-0} bytes in 3 s"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/hls/stream.m3u8")" = 200 ] || fail "HLS playlist"
[ "$(run ctl title show | tr -d '\r')" = "Live stream" ] || fail "ctl title show"
run ctl title set "Smoke test" >/dev/null || fail "ctl title set"
curl -s "http://127.0.0.1:$port/" | grep -q "<title>Smoke test" || fail "the title set by ctl is not on the page"
(timeout 5 "$wine" "$exe" --data-dir "$windata" ctl events >"$work/events" 2>&1 || true) &
sleep 2
run ctl title set "Again" >/dev/null
sleep 3.5
grep -q "title.changed Again" "$work/events" || fail "ctl events did not show the change"
python3 - "$data/control.addr" <<'PY' || fail "a wrong console token was not refused"
import socket, sys
address, token = open(sys.argv[1]).read().split()
host, port = address.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(b"0" * 64 + b'\n{"v": 1, "cmd": "hello"}\n')
answer = s.makefile().readline()
assert '"refused"' in answer and "hello" not in answer, answer
PY
kill -INT "$server"
for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
! kill -0 "$server" 2>/dev/null || fail "Ctrl-C did not stop the server"
server=""
[ ! -e "$data/control.addr" ] || fail "control.addr left behind after a stop"
if run --listen 127.0.0.1:0 --onion >"$work/onion.out" 2>&1; then fail "--onion was not refused"; fi
grep -q "not available on Windows in this version" "$work/onion.out" || fail "--onion refused without saying why"
echo "windows-smoke: ok (demo page, stream, HLS, ctl title and events, token refused, Ctrl-C stop, --onion refused)"
