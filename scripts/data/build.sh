#!/usr/bin/env bash
# Builds the evaluation corpus (DESIGN.md section 10) from text shipped by Debian
# packages, installing the missing ones with apt-get when run as root:
#   scripts/data/build.sh --out DIR [--clients N] [--alpha A] [--seed S] [--extra FILE ...]
#                         [--no-packages] [--domains a,b,...] [--client-bytes N] [--public-bytes N]
# Output: DIR/public.txt (server only), DIR/clients/<k>/{train,valid,heldout}.txt,
# DIR/manifest.json. scripts/data/build.py documents the splitting; --help lists
# every option. --no-packages uses only the --extra files (no apt, no Debian text).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v python3 >/dev/null 2>&1; then
  echo "data/build: python3 is required (platforms/linux/install-deps.sh installs it)" >&2
  exit 1
fi

# Packages whose text the default domains use; bible-kjv brings the reader for
# bible-kjv-text's compressed data.
pkgs=(bible-kjv bible-kjv-text fortunes fortunes-de fortunes-es dict-gcide dict-foldoc dict-jargon)

use_packages=1
for arg in "$@"; do
  case "$arg" in
    --no-packages) use_packages=0 ;;
    -h|--help) exec python3 "$here/build.py" --help ;;
  esac
done

if [ "$use_packages" = 1 ]; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "data/build: missing Debian packages: ${missing[*]}" >&2
      echo "data/build: install them (sudo apt-get install ${missing[*]}, or platforms/linux/install-deps.sh)," >&2
      echo "data/build: or run as root, or use --no-packages with --extra FILE ..." >&2
      exit 1
    fi
    echo "data/build: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
  fi
fi

exec python3 "$here/build.py" "$@"
