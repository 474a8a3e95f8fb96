#!/bin/sh
# SPDX-License-Identifier: MIT
# systemd-analyze verify of the units as `meson install` installs them from BUILDDIR. verify
# insists that ExecStart=/ExecReload= binaries exist, so they are shown at their installed
# paths through overlays in a private mount namespace (the host is not touched). Needs root.
#
#   verify.sh BUILDDIR
set -eu

if [ "${1:-}" != --in-namespace ]; then
        [ $# -eq 1 ] || { echo "usage: $0 BUILDDIR" >&2; exit 2; }
        [ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (unshare, overlay mounts)"; exit 77; }
        for t in systemd-analyze systemd-sysusers unshare meson; do
                command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
        done
        exec unshare --mount --propagation private sh "$0" --in-namespace "$@"
fi
builddir=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$builddir" --no-rebuild --quiet --destdir "$dest" >/dev/null

service=$(find "$dest" -name llmd.service)
socket=$(find "$dest" -name llmd.socket)
sysusers=$(find "$dest" -path '*/sysusers.d/llmd.conf')
[ -n "$service" ] && [ -n "$socket" ] && [ -n "$sysusers" ] || {
        echo "FAIL: meson install did not install llmd.service, llmd.socket and sysusers.d/llmd.conf"
        exit 1
}
echo "installed: ${service#$dest} ${socket#$dest} ${sysusers#$dest}"

for key in ExecStart ExecReload; do
        bin=$(sed -n "s/^$key=\([^ ]*\).*/\1/p" "$service")
        dir=$(dirname "$bin")
        [ -x "$dest$bin" ] || { echo "FAIL: $key=$bin is not what meson installs"; exit 1; }
        mount -t overlay overlay -o "lowerdir=$dest$dir:$dir" "$dir"
done

rc=0
echo "systemd-analyze verify --man=no llmd.service llmd.socket"
systemd-analyze verify --man=no "$service" "$socket" 2>&1 | tee "$dest/verify.out" || rc=1
[ -s "$dest/verify.out" ] && rc=1
# --man=no: the man pages named by Documentation= are not installed yet.

echo "systemd-sysusers --dry-run llmd.conf (on an empty root)"
mkdir -p "$dest/empty/etc"
systemd-sysusers --dry-run --root="$dest/empty" "$sysusers" 2>&1 || rc=1

[ $rc -eq 0 ] && echo "PASS" || echo "FAIL"
exit $rc
