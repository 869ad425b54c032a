#!/bin/bash
# Install what iommu-trace needs on a Debian 12 machine (root): BCC, kernel
# headers, graphviz, the lab's qemu and kernel, and a venv that sees BCC.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup: $*" >&2; }

debs=(python3-bpfcc python3-venv linux-headers-amd64 graphviz gcc
      qemu-system-x86 linux-image-amd64 busybox-static)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        say "needs root to install: ${missing[*]} (run with sudo)"; exit 2
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The lab's second kernel: Debian 12's 6.12 from bookworm-backports (dma:* tracepoints,
# so the raw-tracepoint path; `lab --kernel 6.12`), with its headers for BCC and for
# the lab's test module. The versioned packages, not the backports meta-package, so
# the 6.1 default (linux-image-amd64 above) stays as it is.
have_612() {
    dpkg-query -W -f='${Package} ${Status}\n' "linux-$1-6.12.*-amd64" 2>/dev/null |
        grep -q "install ok installed"
}
if ! have_612 image || ! have_612 headers; then
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$codename" != bookworm ]; then
        say "not Debian 12 ($codename): the lab's 6.12 kernel is not installed (lab --kernel 6.12 will say so)"
    elif [ "$(id -u)" != 0 ]; then
        say "needs root to install the lab's 6.12 kernel from bookworm-backports (run with sudo)"; exit 2
    else
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "adding bookworm-backports to apt (/etc/apt/sources.list.d/bookworm-backports.sources)"
            printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
                "Suites: bookworm-backports" "Components: main" \
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
                >/etc/apt/sources.list.d/bookworm-backports.sources
        fi
        apt-get update -qq
        img=$(apt-cache depends linux-image-amd64/bookworm-backports 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.12\./ {print $2; exit}')
        if [ -z "$img" ]; then
            say "bookworm-backports has no 6.12 linux-image-amd64 now"; exit 1
        fi
        say "installing the lab's 6.12 kernel: $img ${img/image/headers}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports "$img" "${img/image/headers}" >/dev/null
    fi
fi

# BCC's Python module is Debian's, built for /usr/bin/python3: the venv must see it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
    say "creating .venv (with system site-packages, for BCC)"
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install -q -U pip setuptools wheel >/dev/null 2>&1 || say "could not upgrade pip (continuing with the venv's own)"
fi
# kvsplit's runtime tests need torch; the CPU build is enough (an unpinned `torch` would
# pull a CUDA build and its libraries). TORCH_SPEC picks another, e.g.
# "torch --index-url https://download.pytorch.org/whl/cpu".
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    say "installing ${TORCH_SPEC:=torch==2.13.0} (CPU) for kvsplit"
    # shellcheck disable=SC2086  # the spec may carry pip options
    .venv/bin/pip install -q $TORCH_SPEC >/dev/null 2>&1 || { say "could not install $TORCH_SPEC"; exit 1; }
fi
stamp=.venv/.iommu-trace-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing iommu-trace into .venv (editable, with test, lab and kvsplit extras)"
    log=$(mktemp)
    if ! .venv/bin/pip install -q -e '.[test,lab,kvsplit]' >"$log" 2>&1; then
        cat "$log" >&2; say "pip install failed (log above)"; exit 1
    fi
    rm -f "$log"
    touch "$stamp"
fi
