#!/bin/sh
# Installs what building and testing llmd needs on Debian 12, and nothing that is already there.
set -eu

packages="meson ninja-build pkg-config gcc clang python3 libsystemd-dev libmicrohttpd-dev
libcjson-dev libinih-dev libcurl4-openssl-dev mmdebstrap systemd-container scdoc man-db groff-base
bash-completion debhelper devscripts lintian fakeroot dpkg-dev nginx-light haproxy clang-format stress-ng wrk
bubblewrap python3-fastapi python3-flask python3-httpx node-express node-typescript
chromium prometheus python3-prometheus-client"

# Node.js and npm for the JavaScript client tests: the machine's own where there is one (a
# NodeSource install conflicts with Debian's npm), else Debian's.
command -v node >/dev/null 2>&1 || packages="$packages nodejs"
command -v npm >/dev/null 2>&1 || packages="$packages npm"

missing=""
for p in $packages; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "llmd: installing$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
