#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite against our CLI and against runc, side by side.
#
#   bench/runtime_tools.sh [RUNTIME_TOOLS_DIR]      (as root)
#
# It neither fetches nor builds runtime-tools: point it at a checkout built elsewhere, outside
# this repository, with `make runtimetest validation-executables` (Go, GOFLAGS=-mod=vendor).
# Each validation/*/*.t runs from that directory with RUNTIME set to a wrapper, under its own
# --root, with a timeout (TIMEOUT, default 120 s). Prints the TAP `ok` / `not ok` lines per test
# and in total; TAP logs stay in LOG_DIR (default: a new temporary directory).
# Bundles go to a private TMPDIR, removed at exit with any mount left in it (linux_ns_itype runs
# runc without a mount namespace, so its mounts land on the host), as are the empty
# testdir/cgrouptest parents that the relative-cgroup tests leave behind.
set -euo pipefail

RT_DIR=${1:-${RUNTIME_TOOLS_DIR:?give the built runtime-tools directory as argument or RUNTIME_TOOLS_DIR}}
RT_DIR=$(cd "$RT_DIR" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
TIMEOUT=${TIMEOUT:-120}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/runtime-tools.XXXXXX)}
WORK=$(mktemp -d /tmp/runtime-tools-wrap.XXXXXX)
export TMPDIR=$WORK/tmp  # world-searchable: user-namespace tests map root to another uid
mkdir -m 755 "$TMPDIR" && chmod 755 "$WORK"
[[ -x $RT_DIR/runtimetest ]] || { echo "no $RT_DIR/runtimetest: build runtime-tools first" >&2; exit 1; }
mapfile -t TESTS < <(cd "$RT_DIR" && ls validation/*/*.t)
((${#TESTS[@]})) || { echo "no validation/*/*.t in $RT_DIR: build them first" >&2; exit 1; }

sides=(ours)
printf '#!/bin/sh\nPYTHONPATH=%q exec %q -m runtime.oci --root %q "$@"\n' \
    "$REPO" "$PY" "$WORK/ours.root" >"$WORK/ours"
if command -v runc >/dev/null; then
    sides+=(runc)
    printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$(command -v runc)" "$WORK/runc.root" >"$WORK/runc"
fi
chmod +x "$WORK"/*

cleanup() {  # whatever failed tests left: containers, host mounts, bundles, cgroup parents
    local side id m
    for side in "${sides[@]}"; do
        for id in $("$WORK/$side" list -q 2>/dev/null); do
            "$WORK/$side" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    for m in $(findmnt -rno TARGET | grep "^$WORK/" | sort -r || true); do umount -l "$m" || true; done
    rm -rf "$WORK"
    find /sys/fs/cgroup -type d -path '*/testdir/cgrouptest' 2>/dev/null |
        while read -r d; do rmdir "$d" "${d%/cgrouptest}" 2>/dev/null || true; done
}
trap cleanup EXIT

declare -A ok notok
printf '%-36s' test; for s in "${sides[@]}"; do printf '%10s%8s' "$s ok" "not ok"; done; echo
for t in "${TESTS[@]}"; do
    name=$(basename "$t" .t)
    printf '%-36s' "$name"
    for s in "${sides[@]}"; do
        mkdir -p "$LOG_DIR/$s"
        log=$LOG_DIR/$s/$name
        (cd "$RT_DIR" && RUNTIME=$WORK/$s timeout "$TIMEOUT" "./$t" >"$log.tap" 2>"$log.err") || true
        o=$(grep -c '^ok' "$log.tap" || true) n=$(grep -c '^not ok' "$log.tap" || true)
        ok[$s]=$((${ok[$s]:-0} + o)) notok[$s]=$((${notok[$s]:-0} + n))
        printf '%10s%8s' "$o" "$n"
    done
    echo
done
printf '%-36s' TOTAL; for s in "${sides[@]}"; do printf '%10s%8s' "${ok[$s]}" "${notok[$s]}"; done; echo
echo "TAP logs: $LOG_DIR"
