#!/bin/sh
# Installs what the tests, dist/package.sh and dist/check-packages.sh need
# on Debian 12: go-md2man (man pages), lintian, rpm, rpmlint, systemd tools
# (systemd-analyze, systemd-socket-activate), promtool (metrics format),
# the real Postgrey and Berkeley DB's db_dump/db_load (migration tests),
# the real Exim (its ${readsocket} against greyd's exim listeners),
# the real p0f and scapy (SYNs with an OS's fingerprint for p0f's test),
# ip (network namespaces for that test),
# and nfpm where go install puts it ($(go env GOBIN), else
# $(go env GOPATH)/bin).
# Idempotent: does nothing when everything is already there. Run as root.
set -eu

NFPM_VERSION=${NFPM_VERSION:-v2.45.2}

need=""
for pair in go-md2man:go-md2man lintian:lintian rpm:rpm rpmlint:rpmlint \
	systemd-analyze:systemd systemd-socket-activate:systemd \
	deb-systemd-helper:init-system-helpers adduser:adduser gcc:gcc \
	objcopy:binutils groff:groff-base cpio:cpio setpriv:util-linux \
	promtool:prometheus postgrey:postgrey db5.3_dump:db5.3-util db5.3_load:db5.3-util \
	exim4:exim4-daemon-light p0f:p0f ip:iproute2 \
	redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools; do
	cmd=${pair%%:*} pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1; then
		case " $need " in *" $pkg "*) ;; *) need="$need $pkg" ;; esac
	fi
done
# scapy is a module of Debian's Python (/usr/bin/python3), not a command.
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || need="$need python3-scapy"
if [ -n "$need" ]; then
	echo "install-deps: apt-get install$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $need
fi

gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin=$(go env GOPATH)/bin
if [ -x "$gobin/nfpm" ] && "$gobin/nfpm" --version >/dev/null 2>&1 &&
	go version -m "$gobin/nfpm" 2>/dev/null | grep -q "mod[[:space:]]*github.com/goreleaser/nfpm/v2[[:space:]]*$NFPM_VERSION"; then
	:
else
	echo "install-deps: go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
	go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi
echo "install-deps: ok (nfpm at $gobin/nfpm)"
