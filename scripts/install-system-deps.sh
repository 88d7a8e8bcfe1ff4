#!/usr/bin/env bash
# Installs the Debian packages that the runtime and its tests need. Idempotent; runs as root.
set -euo pipefail

packages=(
    busybox-static   # the rootfs the integration tests and `bootstrap busybox` use
    libseccomp2      # seccomp filters are compiled by libseccomp
    iproute2         # network namespaces in tests
    util-linux       # mount, nsenter, unshare for test assertions
    e2fsprogs        # mkfs.ext4 and e2fsck for size-limited volumes (runtime.volumes)
    debootstrap      # bootstrap_debian builds debian:bookworm (runtime.image.bootstrap)
    docker-registry  # the registry server the registry tests pull from and push to
    skopeo           # puts test images into that registry; the pull benchmark's reference
    apache2-utils    # htpasswd (bcrypt) for the registry's basic-auth setup
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
