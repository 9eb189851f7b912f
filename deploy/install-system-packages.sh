#!/usr/bin/env bash
# Install the Debian packages listed in deploy/debian-packages.txt that are not
# installed yet.  Needs root (the lab does too); does nothing when all are there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wanted=$(grep -vE '^\s*(#|$)' "$here/debian-packages.txt")
missing=()
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "segscan: missing Debian packages: ${missing[*]} (run as root to install)" >&2
  exit 2
fi
echo "segscan: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
