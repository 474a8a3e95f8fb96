#!/bin/sh
# A real llama-server for the tests: Debian unstable packages llama.cpp (llama.cpp-tools,
# python3-gguf), but its binaries need a newer C library than bookworm's. So this builds a sid
# tree once with mmdebstrap under /var/cache/llmd-real (or $LLMD_REAL_CACHE), named by a hash of
# its recipe (pinned package version included), and writes two wrappers into it:
#
#   TREE/llmd-llama-server ARGS...   runs the tree's /usr/bin/llama-server
#   TREE/llmd-python3 ARGS...        runs the tree's python3 (it has the gguf package)
#
# Each wrapper enters a private mount namespace, binds /proc, /dev, /tmp and the directory of
# every absolute path among its arguments at the same path inside the tree, and chroots there.
# Every step execs (unshare, sh, chroot): the process llmd started *is* llama-server, so its
# pidfd, its signals and the parent-death signal reach llama-server itself.
#
# Prints the path of the llama-server wrapper; with --models, the directory of the tiny models
# tests/models/make-tiny-models.py makes with the tree's python3-gguf (cached too, named by a
# hash of the generator and the tree). Needs root (unshare, mount, chroot) and, the
# first time, the network (about 300 MB). $LLMD_REAL_MIRROR overrides the Debian mirror, which
# is otherwise read from this machine's apt sources; $LLMD_LLAMA_CPP_VERSION the pinned version.
set -eu

version=${LLMD_LLAMA_CPP_VERSION:-1:0.7.0+dfsg-2}
cache=${LLMD_REAL_CACHE:-/var/cache/llmd-real}

die() {
        echo "real-llama-server: $*" >&2
        exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, unshare, mount, chroot)"
for t in mmdebstrap unshare chroot flock; do
        command -v "$t" >/dev/null || die "needs $t"
done

# The Debian archive this machine already uses: the first deb URI of its apt sources.
mirror=${LLMD_REAL_MIRROR:-}
if [ -z "$mirror" ]; then
        mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
                 sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/*$/\1/p' | head -n 1)
fi
if [ -z "$mirror" ]; then
        mirror=$(grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                 awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' |
                 sed 's:/*$::')
fi
[ -n "$mirror" ] || die "no Debian mirror in the apt sources; set LLMD_REAL_MIRROR"

packages="llama.cpp-tools=$version,python3-gguf=$version"
recipe="v1 mmdebstrap --variant=apt --include=$packages sid $mirror"
hash=$(printf '%s\n' "$recipe" | sha256sum | cut -c1-12)
tree=$cache/sid-$hash

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -e "$tree/.complete" ]; then
        echo "real-llama-server: building $tree (once: sid, $packages)" >&2
        rm -rf "$tree.new"
        t0=$(date +%s)
        # The archive snapshot reachable here may carry an expired Release file for sid.
        if ! mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
                --include="$packages" sid "$tree.new" \
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" \
                </dev/null >&2; then
                rm -rf "$tree.new"
                die "mmdebstrap failed (network? is $version still in sid? set LLMD_LLAMA_CPP_VERSION)"
        fi
        for w in llama-server:/usr/bin/llama-server python3:/usr/bin/python3; do
                cat >"$tree.new/llmd-${w%%:*}" <<EOF
#!/bin/sh
# Written by tools/real-llama-server.sh: runs ${w#*:} of this sid tree (see there).
exec unshare --mount --propagation private /bin/sh -c '
        tree=\$1; shift
        for d in /proc /dev /tmp "\$PWD" "\$@"; do
                case \$d in /*) ;; *) continue ;; esac
                [ -d "\$d" ] || d=\$(dirname "\$d")
                [ -d "\$d" ] && [ "\$d" != / ] || continue
                mkdir -p "\$tree\$d" && mount --rbind "\$d" "\$tree\$d" || exit 127
        done
        exec chroot "\$tree" ${w#*:} "\$@"' sh "$tree" "\$@"
EOF
                chmod 755 "$tree.new/llmd-${w%%:*}"
        done
        printf '%s\n' "$packages" >"$tree.new/.complete"
        # Trees of older recipes go: only the current one is kept.
        for old in "$cache"/sid-*; do
                case $old in "$tree.new") ;; *) rm -rf "$old" ;; esac
        done
        mv "$tree.new" "$tree"
        echo "real-llama-server: tree built in $(($(date +%s) - t0)) s" >&2
fi
if [ "${1:-}" = --models ]; then
        gen=$(cd "$(dirname "$0")/.." && pwd)/tests/models/make-tiny-models.py
        models=$cache/models-$(cat "$gen" "$tree/.complete" | sha256sum | cut -c1-12)
        if [ ! -e "$models/.complete" ]; then
                rm -rf "$models.new" && mkdir -p "$models.new"
                "$tree/llmd-python3" "$gen" "$models.new" >&2 || die "making the models failed"
                touch "$models.new/.complete"
                for old in "$cache"/models-*; do
                        case $old in "$models.new") ;; *) rm -rf "$old" ;; esac
                done
                mv "$models.new" "$models"
        fi
        exec 9>&-
        echo "$models"
        exit 0
fi
exec 9>&-
echo "$tree/llmd-llama-server"
