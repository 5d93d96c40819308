#!/bin/sh
# Builds build/greyd and the greyd .deb and .rpm packages into build/pkg/.
#
# The version comes from the VERSION file only; debian/changelog and
# CHANGELOG.md must have an entry for it, and a v* git tag on HEAD must
# match it. SOURCE_DATE_EPOCH (taken from the environment, else the commit
# time of HEAD, else the date of the top debian/changelog entry) fixes every
# timestamp, so the same tree builds byte-identical packages.
#
# Environment: GREYD_BIN=path packages that binary instead of building
# ./cmd/greyd; NFPM=path selects nfpm (default: PATH, then where go install
# puts it).
# Needs what dist/install-deps.sh installs.
set -eu

cd "$(dirname "$0")/.."
export LC_ALL=C TZ=UTC

fail() {
	echo "package: FAIL: $*" >&2
	exit 1
}

# Every tool this script runs, checked first: on a fresh machine the answer
# is one line saying what to run, not a cascade of "not found" errors.
command -v go >/dev/null 2>&1 ||
	fail "go is missing: install the Go version go.mod names (https://go.dev/dl/), then run \"make deps\" as root"
missing=""
need="objcopy go-md2man gzip"
[ -n "${GREYD_BIN:-}" ] || need="$need gcc" # cgo's external linker
for cmd in $need; do
	command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
if [ -z "${NFPM:-}" ]; then
	NFPM=$(command -v nfpm || true)
	if [ -z "$NFPM" ]; then
		gobin=$(go env GOBIN)
		[ -n "$gobin" ] || gobin=$(go env GOPATH)/bin
		NFPM=$gobin/nfpm
	fi
fi
[ -x "$NFPM" ] || missing="$missing nfpm"
[ -z "$missing" ] ||
	fail "missing${missing}: run \"make deps\" as root (dist/install-deps.sh), then make package again"

VERSION=$(cat VERSION)
# Plain X.Y.Z: valid as a Debian, an RPM and a semantic version alike.
echo "$VERSION" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' ||
	fail "VERSION holds \"$VERSION\", want a version like 1.2.3"
deb_version=$(sed -n '1s/^greyd (\([^)]*\)).*/\1/p' debian/changelog)
[ "$deb_version" = "$VERSION" ] ||
	fail "debian/changelog starts with version \"$deb_version\", VERSION says \"$VERSION\": add a changelog entry"
grep -q "^## $VERSION\b" CHANGELOG.md ||
	fail "CHANGELOG.md has no \"## $VERSION\" section"

in_git=false
if command -v git >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
	in_git=true
	for tag in $(git tag --points-at HEAD 'v[0-9]*'); do
		[ "$tag" = "v$VERSION" ] || fail "HEAD is tagged $tag but VERSION says $VERSION"
	done
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	if $in_git; then
		SOURCE_DATE_EPOCH=$(git log -1 --format=%ct HEAD)
	else
		SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' debian/changelog | head -n 1)" +%s)
	fi
fi
export SOURCE_DATE_EPOCH
GOARCH=$(go env GOARCH)
export VERSION GOARCH
echo "package: greyd $VERSION for $GOARCH, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -d "@$SOURCE_DATE_EPOCH" -R))"

mkdir -p build/man build/doc build/pkg

# Dynamically linked PIE with full RELRO, as Debian builds Go: a static
# binary is a lintian error, a static PIE a lintian warning.
if [ -n "${GREYD_BIN:-}" ]; then
	echo "package: using GREYD_BIN=$GREYD_BIN instead of building ./cmd/greyd"
	cp "$GREYD_BIN" build/greyd
else
	echo "package: go build ./cmd/greyd"
	CGO_ENABLED=1 go build -trimpath -buildvcs=false -buildmode=pie \
		-ldflags "-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now -X main.version=$VERSION" \
		-o build/greyd ./cmd/greyd
fi
# The C toolchain's version notes; Debian's dh_strip drops them too.
objcopy --remove-section=.comment build/greyd
chmod 0755 build/greyd

echo "package: man pages"
man_date=$(date -d "@$SOURCE_DATE_EPOCH" '+%B %Y')
for page in greyd.8 greyd.hcl.5; do
	sed -e "s/@VERSION@/$VERSION/g" -e "s/@DATE@/$man_date/g" "docs/$page.md" |
		go-md2man | gzip -9n >"build/man/$page.gz"
done
gzip -9n <debian/changelog >build/doc/changelog.Debian.gz
gzip -9n <CHANGELOG.md >build/doc/changelog.gz

# The RPM %changelog comes from debian/changelog too, with the RPM release
# (nfpm's default, 1) added to each version. nfpm's changelog:
# setting would also replace the .deb's changelog.Debian.gz with its own
# rendering, so only the RPM run gets it.
awk -v q="'" '
function quote(s) { gsub(q, q q, s); return q s q } # YAML single-quoted
function flush() {
	if (note != "") printf "    - note: %s\n", quote(note)
	note = ""
}
/^[a-z0-9][a-z0-9.+-]* \(/ { v = $2; gsub(/[()]/, "", v); printf "- semver: %s\n  changes:\n", quote(v "-1"); next }
/^  \* / { flush(); note = substr($0, 5); next }
/^    [^ ]/ { sub(/^ +/, ""); note = note " " $0; next }
/^ -- / {
	flush()
	line = substr($0, 5); i = index(line, ">  ")
	who = substr(line, 1, i); when = substr(line, i + 3)
	cmd = "date -u -d \"" when "\" +%Y-%m-%dT%H:%M:%SZ"; cmd | getline iso; close(cmd)
	printf "  packager: %s\n  date: %s\n", quote(who), iso
}
' debian/changelog >build/doc/changelog.yml
{ cat nfpm.yaml; echo "changelog: build/doc/changelog.yml"; } >build/nfpm-rpm.yaml

rm -f build/pkg/greyd_*.deb build/pkg/greyd-*.rpm
"$NFPM" pkg --config nfpm.yaml --packager deb --target build/pkg/ >/dev/null ||
	fail "nfpm could not build the deb package"
"$NFPM" pkg --config build/nfpm-rpm.yaml --packager rpm --target build/pkg/ >/dev/null ||
	fail "nfpm could not build the rpm package"
for p in build/pkg/greyd_*.deb build/pkg/greyd-*.rpm; do
	echo "package: built $p ($(sha256sum "$p" | cut -c1-16)…)"
done
