#!/usr/bin/env bash
# Installs every Debian/Ubuntu package fedproxy needs to build, test and run.
# Idempotent; run as root (or with sudo available). CI calls it before building.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git
  libvulkan-dev libvulkan-volk-dev glslc spirv-tools
  mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  libcjson-dev libsodium-dev libzmq3-dev libutf8proc-dev
  libopenblas-dev liblapacke-dev
  clang libclang-rt-14-dev
  # scripts (data build, experiment) and their tests: standard library only
  python3
  # evaluation text (scripts/data/build.sh): one package or fortune category per domain
  bible-kjv bible-kjv-text fortunes fortunes-de fortunes-es dict-gcide dict-foldoc dict-jargon
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#pkgs[@]} packages present"
