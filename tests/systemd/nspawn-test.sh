#!/bin/sh
# SPDX-License-Identifier: MIT
# Boots a minimal Debian bookworm tree under systemd-nspawn with a real systemd as PID 1, with
# llmd installed from a meson build directory and the llama-server simulator standing in for
# llama-server, and runs guest-checks.sh inside (as the enabled oneshot llmd-check.service).
# Prints TAP: one line per check, by name. Needs root, mmdebstrap, systemd-container.
#
#   nspawn-test.sh BUILDDIR LLAMA_SIM
#
# The tree is built once with mmdebstrap (network needed then, about 30 s) and cached under
# /var/cache/llmd-test/ (or $LLMD_TEST_CACHE), named by a hash of its recipe, so a change of the
# recipe builds a new one. Each run boots it under a throw-away overlay: the cache is never
# written. The guest has no network (--private-network).
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --in-namespace ]; then
        [ $# -eq 2 ] || { echo "usage: $0 BUILDDIR LLAMA_SIM" >&2; exit 2; }
        skip() { echo "1..0 # SKIP $*"; exit 0; }
        [ "$(id -u)" -eq 0 ] || skip "needs root (mmdebstrap, unshare, systemd-nspawn)"
        case ${LLMD_TEST_SANITIZE:-none} in
        none) ;;
        *) skip "llmd is built with b_sanitize=$LLMD_TEST_SANITIZE; the guest has no sanitizer runtime" ;;
        esac
        for t in mmdebstrap systemd-nspawn unshare flock meson; do
                command -v "$t" >/dev/null || skip "$t not installed (see tools/deps.sh)"
        done
        exec unshare --mount --propagation private sh "$0" --in-namespace "$@"
fi
shift
builddir=$(cd "$1" && pwd)
sim=$2

suite=bookworm
# The host's own apt sources unless LLMD_TEST_MIRROR names one (mmdebstrap reads them when no
# mirror is given).
mirror=${LLMD_TEST_MIRROR:-}
packages=systemd,systemd-sysv,dbus,procps,init-system-helpers,libmicrohttpd12,libcjson1,libinih1,libsystemd0,libcurl4
cache=${LLMD_TEST_CACHE:-/var/cache/llmd-test}
recipe="v2 mmdebstrap --variant=minbase --include=$packages $suite ${mirror:-host-sources}"
hash=$(printf '%s\n' "$recipe" | sha256sum | cut -c1-12)
tree=$cache/$suite-$hash

# ---- the cached tree ----
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -e "$tree/.complete" ]; then
        echo "# building the guest tree $tree (once; $recipe)"
        rm -rf "$tree.new"
        t0=$(date +%s)
        if [ -n "$mirror" ]; then
                set -- "deb $mirror $suite main" "deb $mirror $suite-updates main"
        else
                set --
        fi
        if ! mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" "$tree.new" \
                "$@" </dev/null >&2; then
                rm -rf "$tree.new"
                echo "Bail out! mmdebstrap failed (network? apt sources: ${mirror:-the host's})"
                exit 1
        fi
        printf '%s\n' "$recipe" >"$tree.new/.complete"
        # Trees of older recipes go: only the current one is kept.
        for old in "$cache/$suite"-*; do
                case $old in "$tree.new") ;; *) rm -rf "$old" ;; esac
        done
        mv "$tree.new" "$tree"
        echo "# tree built in $(($(date +%s) - t0)) s"
fi
exec 9>&-

# ---- a throw-away root: the cached tree under an overlay on a fresh tmpfs ----
mount -t tmpfs -o mode=0755 tmpfs /run
work=/run/llmd-test
mkdir -p "$work/upper" "$work/work" "$work/root" "$work/dest"
mount -t overlay overlay -o "lowerdir=$tree,upperdir=$work/upper,workdir=$work/work" "$work/root"
root=$work/root

if [ -n "${LLMD_DEB:-}" ]; then
        # The package, installed by the checks in the booted guest, as on a running system (its
        # postinst creates the user and starts the unit).
        mkdir -p "$root/opt/llmd-test"
        cp "$LLMD_DEB" "$root/opt/llmd-test/llmd.deb"
        config=/etc/llama-generate.conf llmd=/usr/sbin/llmd llmctl=/usr/bin/llmctl package=yes
        echo "# llmd from the package $LLMD_DEB"
else
        # llmd as `meson install` puts it, copied in the way a package would (keeping /lib ->
        # usr/lib).
        meson install -C "$builddir" --no-rebuild --quiet --destdir "$work/dest" >&2
        tar -C "$work/dest" -cf - . | tar -C "$root" -xf - --keep-directory-symlink
        config=$(cd "$work/dest" && find . -name llama-generate.conf | head -1 | cut -c2-)
        llmd=$(cd "$work/dest" && find . -type f -path "*/sbin/llmd" | head -1 | cut -c2-)
        llmctl=$(cd "$work/dest" && find . -type f -path "*/bin/llmctl" | head -1 | cut -c2-)
        [ -n "$config" ] && [ -n "$llmd" ] && [ -n "$llmctl" ] || {
                echo "Bail out! meson install did not install llmd, llmctl and llama-generate.conf"
                exit 1
        }
        package=no
        echo "# llmd from $builddir: $llmd, $llmctl, config $config"
fi
echo "# llama-server in the guest is the simulator ($sim), not a real llama-server"
install -m 0755 "$sim" "$root/usr/bin/llama-server"

mkdir -p "$root/opt/llmd-test"
install -m 0755 "$here/guest-checks.sh" "$root/opt/llmd-test/"
cat >"$root/opt/llmd-test/env" <<EOF
LLMD_CONFIG=$config
LLMD=$llmd
LLMCTL=$llmctl
LLMD_TEST_PROXY=${LLMD_TEST_PROXY:-yes}
LLMD_TEST_PACKAGE=$package
EOF
install -m 0644 "$here/llmd-check.service" "$root/etc/systemd/system/"
mkdir -p "$root/etc/systemd/system/llmd.service.d" "$root/etc/systemd/system.conf.d"
install -m 0644 "$here/llmd-test.conf" "$root/etc/systemd/system/llmd.service.d/"
# The console carries TAP: no boot status lines, only systemd's warnings.
printf '[Manager]\nShowStatus=no\nLogLevel=warning\n' >"$root/etc/systemd/system.conf.d/quiet.conf"
systemctl --root="$root" --quiet enable llmd-check.service
# Gettys would fight the check for the console.
systemctl --root="$root" --quiet mask console-getty.service getty@tty1.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer

# ---- boot; the check unit's exit status becomes nspawn's ----
# The guest's journal lands in BUILDDIR/meson-logs/llmd-nspawn/journal.txt.
results=$builddir/meson-logs/llmd-nspawn
rm -rf "$results"
mkdir -p "$results"
t0=$(date +%s%N)
set +e
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout 300 systemd-nspawn --quiet -D "$root" \
        --register=no --keep-unit --console=read-only --volatile=overlay --private-network \
        --bind="$results:/results" -b </dev/null
rc=$?
set -e
t1=$(date +%s%N)
echo "# guest exited with status $rc after $(((t1 - t0) / 1000000)) ms; its journal: $results/journal.txt"
exit $rc
