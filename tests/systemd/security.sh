#!/bin/sh
# SPDX-License-Identifier: MIT
# systemd-analyze security --offline=yes of the built llmd.service: prints the exposure score
# and fails above 3.0, or when the sandbox no longer lets llama-server reach the GPUs.
#
#   security.sh BUILDDIR/units/llmd.service
set -eu
unit=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT

command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
SYSTEMD_COLORS=0 systemd-analyze security --offline=yes --no-pager "$unit" >"$out" 2>&1 || true
# What is still exposed, and why (the unit file's comments say why each stays).
grep '✗' "$out" | sed 's/  */ /g'
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$out")
[ -n "$score" ] || { cat "$out"; echo "FAIL: no exposure score"; exit 1; }
echo "exposure score of llmd.service: $score (target <= 3.0)"

rc=0
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || { echo "FAIL: above 3.0"; rc=1; }
# GPU access: the device ACL names the NVIDIA, DRM and KFD nodes; no W^X for CUDA's JIT.
for dev in 'char-nvidia\*:rw' 'char-drm:rw' 'char-kfd:rw'; do
        grep -q "DeviceAllow=.*$dev" "$out" || { echo "FAIL: DeviceAllow= lacks $dev"; rc=1; }
done
grep -q '✗ MemoryDenyWriteExecute=' "$out" ||
        { echo "FAIL: MemoryDenyWriteExecute= is set: CUDA's JIT needs W+X memory"; rc=1; }
grep -q '✗ PrivateDevices=' "$out" || { echo "FAIL: PrivateDevices= hides the GPU nodes"; rc=1; }
[ $rc -eq 0 ] && echo "PASS"
exit $rc
