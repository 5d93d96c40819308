#!/bin/sh
# Checks the systemd units in systemd/ and the inet drop-in without
# installing them: systemd-analyze verify must print nothing, and
# systemd-analyze security must rate greyd.service at most $MAX_EXPOSURE.
# Runs anywhere systemd's tools are installed; systemd need not be PID 1.
#
# Environment: GREYD_BIN=path is the ExecStart binary the units are checked
# against (default build/greyd, else a stub).
set -eu

cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

fail() {
	echo "check-units: FAIL: $*" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A root with the host's units (for sockets.target & co), greyd's units in
# /etc/systemd/system and something executable at /usr/sbin/greyd.
root=$tmp/root
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/sbin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp systemd/greyd.socket systemd/greyd.service "$root/etc/systemd/system/"
bin=${GREYD_BIN:-build/greyd}
if [ -x "$bin" ]; then
	cp "$bin" "$root/usr/sbin/greyd"
else
	printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/greyd"
	chmod 0755 "$root/usr/sbin/greyd"
fi

verify() {
	# verify exits 0 on unknown keys and bad values, so its output counts.
	if ! out=$(systemd-analyze verify --man=no --root="$root" greyd.socket greyd.service 2>&1) || [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		fail "systemd-analyze verify $1"
	fi
	echo "check-units: ok: systemd-analyze verify $1: no findings"
}

verify "greyd.socket greyd.service"
mkdir -p "$root/etc/systemd/system/greyd.socket.d"
cp dist/greyd.socket.d/inet.conf "$root/etc/systemd/system/greyd.socket.d/"
verify "with the inet drop-in greyd.socket.d/inet.conf"
mkdir -p "$root/etc/systemd/system/greyd.service.d"
cp dist/greyd.service.d/tcp.conf "$root/etc/systemd/system/greyd.service.d/"
verify "with the TCP drop-in greyd.service.d/tcp.conf (Redis over TCP, metrics)"

out=$(systemd-analyze security --offline=yes systemd/greyd.service 2>&1) ||
	{ printf '%s\n' "$out" >&2; fail "systemd-analyze security"; }
level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for greyd.service: \([0-9.]*\).*/\1/p')
[ -n "$level" ] || { printf '%s\n' "$out" >&2; fail "no exposure level in the systemd-analyze security output"; }
awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }' ||
	{ printf '%s\n' "$out" >&2; fail "greyd.service exposure $level, want at most $MAX_EXPOSURE"; }
echo "check-units: ok: systemd-analyze security: greyd.service exposure $level (at most $MAX_EXPOSURE)"
printf '%s\n' "$out" | grep '✗' | sed 's/^/check-units:   /'

# p0f's example unit (dist/p0f), checked against the host's p0f.
if [ -x /usr/sbin/p0f ]; then
	if ! out=$(systemd-analyze verify --man=no dist/p0f/greyd-p0f.service 2>&1) || [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		fail "systemd-analyze verify dist/p0f/greyd-p0f.service"
	fi
	out=$(systemd-analyze security --offline=yes dist/p0f/greyd-p0f.service 2>&1) ||
		{ printf '%s\n' "$out" >&2; fail "systemd-analyze security greyd-p0f.service"; }
	level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for greyd-p0f.service: \([0-9.]*\).*/\1/p')
	awk -v l="${level:-99}" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }' ||
		{ printf '%s\n' "$out" >&2; fail "greyd-p0f.service exposure ${level:-unknown}, want at most $MAX_EXPOSURE"; }
	echo "check-units: ok: dist/p0f/greyd-p0f.service: verify clean, exposure $level"
else
	echo "check-units: FAIL: /usr/sbin/p0f missing (make deps installs it)" >&2
	exit 1
fi
