#!/usr/bin/env bash
# Builds the agent's artifact set and uploads it for the image pipeline
# (README, step 4.4).  Run from the repository root with credentials of the
# account that builds the image; prints the SHA-256 to put into the
# agent-image parameter file.
#
#   deploy/aws/publish-artifacts.sh VERSION SCOPE_DIR KEYS_DIR [NETWORK_MAP]
#
# SCOPE_DIR  the approved scope and its signature, as the segmentation owner
#            signed them with the scope key (alias/segscan-scopes)
# KEYS_DIR   the public keys agents verify with, PEM (README, step 4.2)
# NETWORK_MAP  defaults to deploy/aws/founding/network.yaml
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  sed -n '7,12p' "$0" >&2
  exit 2
fi
version=$1 scope_dir=$2 keys_dir=$3
network_map=${4:-deploy/aws/founding/network.yaml}
case $version in
  *[!A-Za-z0-9._-]* | "") echo "bad VERSION: $version" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
set_dir=$work/set
mkdir -p "$set_dir/wheels" "$set_dir/etc/scope" "$set_dir/etc/keys"

# The agent and its dependencies as wheels for the image's Python (3.11 on
# x86_64), so the build installs without reaching a package index.
python3 -m pip wheel --quiet --no-deps --wheel-dir "$set_dir/wheels" .
python3 -m pip download --quiet --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --python-version 3.11 --implementation cp \
  --dest "$set_dir/wheels" "$set_dir"/wheels/segscan-*.whl

cp "$scope_dir"/* "$set_dir/etc/scope/"
cp "$keys_dir"/* "$set_dir/etc/keys/"
cp "$network_map" "$set_dir/etc/network.yaml"
cp deploy/aws/segscan-agent.service "$set_dir/"

# Same inputs, same bytes: the SHA-256 in the reviewed parameter file names
# exactly this set.
archive=$work/segscan-agent-$version.tar.gz
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -C "$set_dir" -cf - . | gzip -n > "$archive"
sha256=$(sha256sum "$archive" | cut -d' ' -f1)

account=$(aws sts get-caller-identity --query Account --output text)
region=${AWS_DEFAULT_REGION:-$(aws configure get region)}
bucket=segscan-agent-artifacts-$account-$region
# A published version is never overwritten.
aws s3api put-object --bucket "$bucket" \
  --key "artifacts/segscan-agent-$version.tar.gz" \
  --body "$archive" --if-none-match '*' > /dev/null

echo "ArtifactVersion=$version"
echo "ArtifactSha256=$sha256"
