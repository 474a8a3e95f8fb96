#!/bin/sh
# Builds the Debian package the standard way and checks it: copies this tree (the files git
# knows, committed or not) into a temporary directory, packaging/debian as its debian/, runs
# `dpkg-buildpackage -b -us -uc` there, then lintian on the .changes (and so the .deb): any
# error or warning fails. The results go to OUTDIR (default build-deb/); prints the .deb path.
# Needs: build-essential devscripts lintian, plus the Build-Depends of packaging/debian/control.
set -eu
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-build-deb}" && cd "${1:-build-deb}" && pwd)
version=$(sed -n '1s/^llmd (\([^)]*\)).*/\1/p' packaging/debian/changelog)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/llmd-$version
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$src" -xf -
cp -r packaging/debian "$src/debian"
# dh_installsysusers installs the snippet and creates the user in postinst, before the unit starts.
cp units/sysusers.d/llmd.conf "$src/debian/llmd.sysusers"

(cd "$src" && dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 || {
        tail -40 "$out/build.log" >&2
        echo "build-deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
        exit 1
}
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mv "$tmp"/*.deb "$tmp"/*.changes "$tmp"/*.buildinfo "$out/"
changes=$(ls "$out"/*.changes)
if ! lintian --fail-on error,warning --info "$changes" >"$out/lintian.log" 2>&1; then
        cat "$out/lintian.log" >&2
        echo "build-deb: lintian found errors or warnings" >&2
        exit 1
fi
ls "$out"/llmd_*.deb
