#!/bin/sh
# Checks the packages dist/package.sh built in build/pkg/:
#   1. the units (dist/check-units.sh);
#   2. lintian and rpmlint (findings must be fixed or explained in
#      dist/lintian-overrides and dist/rpmlint.toml);
#   3. the contents of both packages: binary, units, man pages, docs,
#      licence, conffiles, the empty /etc/greyd/conf.d, scripts;
#   4. as root, on a machine where systemd need not be PID 1: dpkg -i, the
#      user, directories, permissions and conffiles, a conf.d drop-in that
#      check-config shows, a reinstall that keeps a
#      changed conffile, the installed greyd under systemd-socket-activate
#      (dist/sdtest), then dpkg -r and dpkg -P, after which the system must be
#      as before apart from the greyd user and group.
# Set SKIP_INSTALL=1 to stop after step 3 (e.g. when not root).
set -eu

cd "$(dirname "$0")/.."
export LC_ALL=C

fail() {
	echo "check-packages: FAIL: $*" >&2
	exit 1
}
ok() { echo "check-packages: ok: $*"; }
step() { echo "check-packages: --- $*"; }

VERSION=$(cat VERSION)
one() {
	# shellcheck disable=SC2048,SC2086
	set -- $*
	if [ $# -ne 1 ] || [ ! -f "$1" ]; then
		fail "want exactly one $* (run dist/package.sh)"
	fi
	echo "$1"
}
deb=$(one "build/pkg/greyd_*.deb")
rpm=$(one "build/pkg/greyd-*.rpm")
tmp=$(mktemp -d)
installed_here=false
cleanup() {
	if $installed_here && dpkg-query -W -f='${Status}' greyd 2>/dev/null | grep -qv 'not-installed'; then
		echo "check-packages: purging greyd after a failure" >&2
		dpkg -P greyd >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# has LIST LINE...: every LINE occurs as a whole line in the file LIST.
has() {
	list=$1
	shift
	for want in "$@"; do
		grep -qxF -- "$want" "$list" || { cat "$list" >&2; fail "missing: $want"; }
	done
}

step "units"
GREYD_BIN=build/greyd dist/check-units.sh

step "lintian $deb"
if ! lintian --pedantic --display-info --display-experimental --show-overrides \
	--fail-on error,warning "$deb" >"$tmp/lintian" 2>&1; then
	cat "$tmp/lintian" >&2
	fail "lintian reports errors or warnings that dist/lintian-overrides does not explain"
fi
sed 's/^/check-packages:   /' "$tmp/lintian"
ok "lintian: no errors, no warnings without an override"

step "rpmlint $rpm"
# nfpm's cpio archive has absolute names, and rpmlint unpacks it with
# "cpio -id" in a temp dir: GNU cpio would write the files into / instead.
mkdir "$tmp/bin"
printf '#!/bin/sh\nexec %s --no-absolute-filenames "$@"\n' "$(command -v cpio)" >"$tmp/bin/cpio"
chmod 0755 "$tmp/bin/cpio"
if ! PATH="$tmp/bin:$PATH" rpmlint -c dist/rpmlint.toml "$rpm" >"$tmp/rpmlint" 2>&1 ||
	grep -q ': E: ' "$tmp/rpmlint"; then
	cat "$tmp/rpmlint" >&2
	fail "rpmlint reports errors that dist/rpmlint.toml does not explain"
fi
sed 's/^/check-packages:   /' "$tmp/rpmlint"
ok "rpmlint: no errors that are not explained"

step "deb contents"
arch=$(dpkg --print-architecture)
[ "$(dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ')" = "Package: greyd Version: $VERSION Architecture: $arch " ] ||
	fail "control fields: $(dpkg-deb -f "$deb" Package Version Architecture)"
dpkg-deb -f "$deb" Depends | grep -q 'adduser' || fail "Depends lacks adduser"
dpkg-deb -f "$deb" Depends | grep -q 'libc6' || fail "Depends lacks libc6"
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' >"$tmp/deb.list"
has "$tmp/deb.list" \
	"-rwxr-xr-x root/root ./usr/sbin/greyd" \
	"drwxr-xr-x root/root ./etc/greyd/" \
	"drwxr-xr-x root/root ./etc/greyd/conf.d/" \
	"-rw-r--r-- root/root ./etc/greyd/greyd.hcl" \
	"-rw-r--r-- root/root ./etc/greyd/whitelist_clients" \
	"-rw-r--r-- root/root ./etc/greyd/whitelist_recipients" \
	"-rw-r--r-- root/root ./etc/greyd/dynamic_names" \
	"-rw-r--r-- root/root ./etc/greyd/trap_recipients" \
	"-rw-r--r-- root/root ./lib/systemd/system/greyd.service" \
	"-rw-r--r-- root/root ./lib/systemd/system/greyd.socket" \
	"-rw-r--r-- root/root ./usr/share/man/man8/greyd.8.gz" \
	"-rw-r--r-- root/root ./usr/share/man/man5/greyd.hcl.5.gz" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/copyright" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/changelog.Debian.gz" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/changelog.gz" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/examples/greyd.socket.d/inet.conf" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/examples/greyd.service.d/tcp.conf" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/examples/grafana/greyd.json" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/examples/prometheus/greyd-rules.yml" \
	"-rw-r--r-- root/root ./usr/share/doc/greyd/examples/greyd-p0f.service" \
	"-rw-r--r-- root/root ./usr/share/lintian/overrides/greyd"
! grep -q '/var/lib/greyd' "$tmp/deb.list" || fail "the .deb must not ship /var/lib/greyd (postinst makes it)"
! grep -q 'systemd/system/greyd\.socket\.d' "$tmp/deb.list" || fail "the .deb must not move greyd.socket off the unix socket (the rpm's SELinux drop-in)"
! grep -q '/etc/greyd/conf\.d/.' "$tmp/deb.list" || fail "the .deb ships files in /etc/greyd/conf.d, which is the admin's"
ok "deb files, modes and owners; /etc/greyd/conf.d empty"
# Debian keeps the licence in the copyright file: it must hold LICENSE's
# text (lintian flags a second licence file as extra-license-file).
words() { tr -s ' \n\t' '   ' | sed 's/^ //; s/ $//'; }
dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/share/doc/greyd/copyright >"$tmp/copyright"
# The stand-alone "License: MIT" paragraph, without its first line and the
# continuation marks, against LICENSE from "Permission" on.
awk -v RS= '/^License: MIT\n/ { sub(/^[^\n]*\n/, ""); print }' "$tmp/copyright" |
	sed 's/^ //; s/^\.$//' | words >"$tmp/copyright.mit"
sed -n '/^Permission/,$p' LICENSE | words >"$tmp/license.mit"
if ! [ -s "$tmp/license.mit" ] || ! cmp -s "$tmp/license.mit" "$tmp/copyright.mit"; then
	fail "the MIT text of /usr/share/doc/greyd/copyright is not that of LICENSE"
fi
grep -q "^Copyright: $(sed -n 's/^Copyright (c) //p' LICENSE)$" "$tmp/copyright" ||
	fail "debian/copyright lacks LICENSE's copyright line ($(sed -n 's/^Copyright (c) //p' LICENSE))"
ok "deb copyright holds LICENSE (MIT) and the whitelist's GPL-2+"
dpkg-deb -e "$deb" "$tmp/control"
printf '/etc/greyd/dynamic_names\n/etc/greyd/greyd.hcl\n/etc/greyd/trap_recipients\n/etc/greyd/whitelist_clients\n/etc/greyd/whitelist_recipients\n' >"$tmp/conffiles.want"
sort "$tmp/control/conffiles" | diff -u "$tmp/conffiles.want" - || fail "deb conffiles differ"
ok "deb conffiles: $(tr '\n' ' ' <"$tmp/control/conffiles")"
for s in postinst prerm postrm; do
	cmp -s "$tmp/control/$s" "debian/$s" || fail "deb $s is not debian/$s"
	[ -x "$tmp/control/$s" ] || fail "deb $s is not executable"
done
ok "deb maintainer scripts: postinst prerm postrm"
for page in build/man/greyd.8.gz build/man/greyd.hcl.5.gz; do
	if out=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1) && [ -z "$out" ]; then :; else
		printf '%s\n' "$out" >&2
		fail "groff warns about $page"
	fi
done
ok "man pages render without groff warnings"

step "rpm contents"
rpm -K --nosignature "$rpm" >"$tmp/rpmk" 2>&1 || { cat "$tmp/rpmk" >&2; fail "rpm -K: broken digests"; }
ok "$(cat "$tmp/rpmk")"
rpm -qp --qf '%{NAME} %{VERSION}\n' "$rpm" | grep -qx "greyd $VERSION" || fail "rpm name/version: $(rpm -qp --qf '%{NAME} %{VERSION}' "$rpm")"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" >"$tmp/rpm.list"
has "$tmp/rpm.list" \
	"-rwxr-xr-x root:root /usr/sbin/greyd" \
	"drwxr-xr-x root:root /etc/greyd/conf.d" \
	"-rw-r--r-- root:root /etc/greyd/greyd.hcl" \
	"-rw-r--r-- root:root /etc/greyd/whitelist_clients" \
	"-rw-r--r-- root:root /etc/greyd/whitelist_recipients" \
	"-rw-r--r-- root:root /etc/greyd/dynamic_names" \
	"-rw-r--r-- root:root /etc/greyd/trap_recipients" \
	"-rw-r--r-- root:root /usr/lib/systemd/system/greyd.service" \
	"-rw-r--r-- root:root /usr/lib/systemd/system/greyd.socket" \
	"drwxr-xr-x root:root /usr/lib/systemd/system/greyd.socket.d" \
	"-rw-r--r-- root:root /usr/lib/systemd/system/greyd.socket.d/inet.conf" \
	"-rw-r--r-- root:root /usr/share/man/man8/greyd.8.gz" \
	"-rw-r--r-- root:root /usr/share/man/man5/greyd.hcl.5.gz" \
	"-rw-r--r-- root:root /usr/share/licenses/greyd/LICENSE" \
	"-rw-r--r-- root:root /usr/share/licenses/greyd/copyright" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/CHANGELOG.md" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/examples/greyd.socket.d/inet.conf" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/examples/greyd.service.d/tcp.conf" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/examples/grafana/greyd.json" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/examples/prometheus/greyd-rules.yml" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/examples/greyd-p0f.service" \
	"-rw-r--r-- root:root /usr/share/doc/greyd/README.SELinux" \
	"drwxr-x--- greyd:greyd /var/lib/greyd"
! grep -q '/etc/greyd/conf\.d/.' "$tmp/rpm.list" || fail "the .rpm ships files in /etc/greyd/conf.d, which is the admin's"
ok "rpm files, modes and owners; /etc/greyd/conf.d empty"
rpm -qpL "$rpm" >"$tmp/rpm.license"
has "$tmp/rpm.license" /usr/share/licenses/greyd/LICENSE /usr/share/licenses/greyd/copyright
rpm -qp --qf '[%{FILEDIGESTS} %{FILENAMES}\n]' "$rpm" | grep -qxF "$(sha256sum LICENSE | cut -d' ' -f1) /usr/share/licenses/greyd/LICENSE" ||
	fail "the rpm's /usr/share/licenses/greyd/LICENSE is not LICENSE"
ok "rpm %license: LICENSE and copyright"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | sed -n 's/^cn //p' | sort >"$tmp/rpm.conf"
diff -u "$tmp/conffiles.want" "$tmp/rpm.conf" || fail "rpm %config(noreplace) files differ"
ok "rpm %config(noreplace): $(tr '\n' ' ' <"$tmp/rpm.conf")"
rpm -qpd "$rpm" >"$tmp/rpm.doc"
has "$tmp/rpm.doc" /usr/share/man/man8/greyd.8.gz /usr/share/man/man5/greyd.hcl.5.gz \
	/usr/share/doc/greyd/README.SELinux /usr/share/doc/greyd/examples/grafana/greyd.json \
	/usr/share/doc/greyd/examples/prometheus/greyd-rules.yml
ok "rpm %doc has the man pages, README.SELinux, the dashboard and the alerting rules"
# The rpm's greyd.socket drop-in is active configuration, not %doc (which
# rpm --excludedocs leaves out), and listens where the example does.
! grep -q '^/usr/lib/systemd' "$tmp/rpm.doc" || fail "the rpm marks a unit file as %doc: $(grep '^/usr/lib/systemd' "$tmp/rpm.doc")"
rpm -qp --qf '[%{FILEDIGESTS} %{FILENAMES}\n]' "$rpm" | grep -qxF "$(sha256sum rpm/greyd.socket.d/inet.conf | cut -d' ' -f1) /usr/lib/systemd/system/greyd.socket.d/inet.conf" ||
	fail "the rpm's /usr/lib/systemd/system/greyd.socket.d/inet.conf is not rpm/greyd.socket.d/inet.conf"
[ "$(grep -v '^#' dist/greyd.socket.d/inet.conf)" = "$(grep -v '^#' rpm/greyd.socket.d/inet.conf)" ] ||
	fail "rpm/greyd.socket.d/inet.conf and dist/greyd.socket.d/inet.conf listen differently"
ok "rpm greyd.socket.d/inet.conf: active, 127.0.0.1:10023 as the example"
rpm -qp --scripts "$rpm" >"$tmp/rpm.scripts"
for s in preinstall postinstall preuninstall postuninstall; do
	grep -q "^$s scriptlet" "$tmp/rpm.scripts" || { cat "$tmp/rpm.scripts" >&2; fail "rpm has no $s scriptlet"; }
done
for s in rpm/pre rpm/post rpm/preun rpm/postun debian/postinst debian/prerm debian/postrm; do
	sh -n "$s" || fail "$s: shell syntax"
done
ok "rpm scriptlets: pre post preun postun"
rpm -qp --changelog "$rpm" | grep -q " - $VERSION-" || fail "rpm %changelog has no entry for $VERSION"
ok "rpm %changelog: $(rpm -qp --changelog "$rpm" | head -n 1)"

if [ "${SKIP_INSTALL:-}" = 1 ]; then
	echo "check-packages: SKIP_INSTALL=1: not installing"
	exit 0
fi
[ "$(id -u)" = 0 ] || fail "the install test needs root (or set SKIP_INSTALL=1)"
if dpkg-query -W -f='${Status}' greyd 2>/dev/null | grep -qv 'not-installed'; then
	fail "greyd is already installed here; the install test needs a machine without it (dpkg -P greyd)"
fi
for p in /etc/greyd /var/lib/greyd /usr/sbin/greyd; do
	[ ! -e "$p" ] || fail "$p exists without the package; the install test needs a machine without it"
done

# What dpkg -P must restore. /etc/passwd & co keep the greyd user; dpkg's
# own database changes; Postfix refreshes its chroot in /var/spool/postfix
# by itself (and greyd.socket's directory there needs systemd as PID 1).
snapshot() {
	find /etc /usr/sbin /usr/lib/systemd /usr/share/doc /usr/share/man /usr/share/lintian \
		/var/lib /var/spool \
		\( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/lib/ucf -o -path /var/spool/postfix \) -prune -o \
		-printf '%p %M %u %g %s\n' 2>/dev/null |
		grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-? |^/etc/\.pwd\.lock ' | sort
}
snapshot >"$tmp/before"

# Maintainer scripts must be quiet without systemd as PID 1 too.
quiet() {
	if grep -Ein 'warn|error|fail|denied|not booted|bus|cannot|unable' "$1"; then
		cat "$1" >&2
		fail "$2 printed something alarming"
	fi
}
if [ -d /run/systemd/system ]; then
	echo "check-packages: note: systemd is running here"
else
	echo "check-packages: note: systemd is not PID 1 here"
fi

step "dpkg -i $deb"
installed_here=true
dpkg -i "$deb" </dev/null >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i"; }
sed 's/^/check-packages:   /' "$tmp/install.log"
quiet "$tmp/install.log" "dpkg -i"
ok "installed, quietly"

pw=$(getent passwd greyd) || fail "no greyd user"
uid=$(echo "$pw" | cut -d: -f3)
[ "$uid" -lt 1000 ] || fail "greyd uid $uid is not a system uid"
[ "$(echo "$pw" | cut -d: -f6)" = /var/lib/greyd ] || fail "greyd home: $pw"
case $(echo "$pw" | cut -d: -f7) in */nologin | */false) ;; *) fail "greyd can log in: $pw" ;; esac
getent group greyd >/dev/null || fail "no greyd group"
[ "$(id -gn greyd)" = greyd ] || fail "greyd's primary group is $(id -gn greyd)"
ok "user: $pw"

# stat format: mode owner:group path
check_stat() {
	got=$(stat -c '%a %U:%G %n' "$3" 2>&1) || fail "$3: $got"
	[ "$got" = "$1 $2 $3" ] || fail "$got, want $1 $2 $3"
}
check_stat 750 greyd:greyd /var/lib/greyd
check_stat 755 root:root /etc/greyd
check_stat 755 root:root /etc/greyd/conf.d
check_stat 644 root:root /etc/greyd/greyd.hcl
check_stat 644 root:root /etc/greyd/whitelist_clients
check_stat 644 root:root /etc/greyd/whitelist_recipients
check_stat 644 root:root /etc/greyd/dynamic_names
check_stat 644 root:root /etc/greyd/trap_recipients
check_stat 755 root:root /usr/sbin/greyd
check_stat 644 root:root /lib/systemd/system/greyd.service
check_stat 644 root:root /lib/systemd/system/greyd.socket
check_stat 644 root:root /usr/share/man/man8/greyd.8.gz
check_stat 644 root:root /usr/share/man/man5/greyd.hcl.5.gz
ok "directories and permissions"

dpkg-query -W -f='${Conffiles}\n' greyd | awk 'NF { print $1 }' | sort >"$tmp/conffiles.got"
diff -u "$tmp/conffiles.want" "$tmp/conffiles.got" || fail "dpkg does not track the conffiles"
for f in greyd.hcl whitelist_clients whitelist_recipients dynamic_names trap_recipients; do
	cmp -s "etc/greyd/$f" "/etc/greyd/$f" || fail "/etc/greyd/$f differs from etc/greyd/$f"
done
ok "conffiles registered with dpkg"

for link in /etc/systemd/system/sockets.target.wants/greyd.socket /etc/systemd/system/multi-user.target.wants/greyd.service; do
	[ -L "$link" ] || fail "$link missing: the units were not enabled"
done
ok "greyd.socket and greyd.service enabled"

out=$(/usr/sbin/greyd -version) || fail "greyd -version"
[ "$out" = "greyd $VERSION" ] || fail "greyd -version prints \"$out\", want \"greyd $VERSION\""
ok "greyd -version: $out"
setpriv --reuid=greyd --regid=greyd --init-groups /usr/sbin/greyd check-config -config /etc/greyd >"$tmp/check.log" 2>&1 ||
	{ cat "$tmp/check.log" >&2; fail "greyd check-config of the installed configuration, as greyd"; }
ok "greyd check-config accepts /etc/greyd (as user greyd)"
[ -z "$(ls -A /etc/greyd/conf.d)" ] || fail "/etc/greyd/conf.d is not empty after installation"
[ "$(dpkg-query -S /etc/greyd/conf.d 2>/dev/null)" = "greyd: /etc/greyd/conf.d" ] || fail "dpkg does not list /etc/greyd/conf.d as greyd's"
printf 'greylist {\n  delay = "10m"\n}\n' >/etc/greyd/conf.d/50-check.hcl
setpriv --reuid=greyd --regid=greyd --init-groups /usr/sbin/greyd check-config -config /etc/greyd >"$tmp/check.log" 2>&1 ||
	{ cat "$tmp/check.log" >&2; fail "greyd check-config with a conf.d drop-in"; }
grep -Eq '^  delay += "10m" +# conf\.d/50-check\.hcl:2$' "$tmp/check.log" ||
	{ cat "$tmp/check.log" >&2; fail "check-config does not show the drop-in's delay with its origin"; }
rm /etc/greyd/conf.d/50-check.hcl
ok "/etc/greyd/conf.d: empty, greyd's; a drop-in overrides greyd.hcl and check-config names it"
# RestartPreventExitStatus=2 relies on this: a broken configuration is
# exit status 2 for the daemon and for check-config (ExecReload).
printf 'greylist {\n  delay = "5x"\n}\n' >"$tmp/bad.hcl"
for cmd in "-config" "check-config -config"; do
	# shellcheck disable=SC2086
	status=0 && /usr/sbin/greyd $cmd "$tmp/bad.hcl" >"$tmp/bad.log" 2>&1 || status=$?
	[ "$status" = 2 ] || { cat "$tmp/bad.log" >&2; fail "greyd $cmd <broken config> exited with $status, want 2"; }
done
ok "a broken configuration is exit status 2 (greyd -config and greyd check-config)"

man_opt=--man=no
command -v man >/dev/null 2>&1 && man_opt=--man=yes
if ! out=$(systemd-analyze verify "$man_opt" /lib/systemd/system/greyd.socket /lib/systemd/system/greyd.service 2>&1) || [ -n "$out" ]; then
	printf '%s\n' "$out" >&2
	fail "systemd-analyze verify of the installed units"
fi
ok "systemd-analyze verify $man_opt of the installed units: no findings"

step "reinstall keeps a changed conffile"
echo "# check-packages: local change" >>/etc/greyd/greyd.hcl
dpkg -i "$deb" </dev/null >"$tmp/reinstall.log" 2>&1 || { cat "$tmp/reinstall.log" >&2; fail "dpkg -i (reinstall)"; }
quiet "$tmp/reinstall.log" "dpkg -i (reinstall)"
grep -q '^# check-packages: local change$' /etc/greyd/greyd.hcl || fail "the reinstall overwrote the changed /etc/greyd/greyd.hcl"
[ "$(getent passwd greyd)" = "$pw" ] || fail "the reinstall changed the greyd user"
ok "reinstall (postinst configure with an old version) is quiet and keeps /etc/greyd/greyd.hcl"

step "socket activation of the installed greyd"
go build -o "$tmp/sdtest" ./dist/sdtest
"$tmp/sdtest" -bin /usr/sbin/greyd -config /etc/greyd -user greyd
[ -f /var/lib/greyd/greyd.db ] || fail "greyd wrote no /var/lib/greyd/greyd.db"
find /var/lib/greyd -mindepth 1 ! -user greyd | grep . && fail "files in /var/lib/greyd not owned by greyd"
find /var/lib/greyd -mindepth 1 -perm /o=rwx | grep . && fail "files in /var/lib/greyd readable by others"
ok "state in /var/lib/greyd: $(cd /var/lib/greyd && ls -A | tr '\n' ' ')"

step "dpkg -r greyd"
dpkg -r greyd </dev/null >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r"; }
sed 's/^/check-packages:   /' "$tmp/remove.log"
quiet "$tmp/remove.log" "dpkg -r"
for f in /usr/sbin/greyd /lib/systemd/system/greyd.service /lib/systemd/system/greyd.socket /usr/share/man/man8/greyd.8.gz; do
	[ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
[ -f /etc/greyd/greyd.hcl ] || fail "dpkg -r removed the configuration"
[ -f /var/lib/greyd/greyd.db ] || fail "dpkg -r removed the database"
getent passwd greyd >/dev/null || fail "dpkg -r removed the greyd user"
ok "removed; configuration, database and user kept"

step "dpkg -P greyd"
dpkg -P greyd </dev/null >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg -P"; }
sed 's/^/check-packages:   /' "$tmp/purge.log"
quiet "$tmp/purge.log" "dpkg -P"
installed_here=false
getent passwd greyd >/dev/null || fail "dpkg -P removed the greyd user"
snapshot >"$tmp/after"
diff -u "$tmp/before" "$tmp/after" || fail "dpkg -P left the system different from before dpkg -i (diff above)"
ok "purged: the system is as before, apart from the greyd user and group"
echo "check-packages: PASS"
