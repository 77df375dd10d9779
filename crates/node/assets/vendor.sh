#!/usr/bin/env bash
# Vendors Apache ECharts from npm into vendor/, for the node's dashboard.
#
# The build never downloads anything: crates/node/src/dashboard.rs embeds
# vendor/echarts.min.js with include_bytes!, and the file is committed. Run this script
# only to change the ECharts version (then commit vendor/ and say why):
#
#   crates/node/assets/vendor.sh            # the version pinned below
#   crates/node/assets/vendor.sh 5.6.0      # another 5.x release
#
# It needs npm. It writes vendor/echarts.min.js, vendor/ECHARTS-LICENSE and
# vendor/ECHARTS-NOTICE (Apache-2.0), and vendor/ECHARTS-VERSION (the version, the
# npm tarball's integrity and the SHA-256 of the vendored file).
set -euo pipefail
version="${1:-5.6.0}"
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "echarts@$version" --json >pack.json)
tarball="$tmp/echarts-$version.tgz"
integrity="$(node -e 'console.log(require(process.argv[1])[0].integrity)' "$tmp/pack.json")"
tar -xzf "$tarball" -C "$tmp"
mkdir -p vendor
cp "$tmp/package/dist/echarts.min.js" vendor/echarts.min.js
cp "$tmp/package/LICENSE" vendor/ECHARTS-LICENSE
cp "$tmp/package/NOTICE" vendor/ECHARTS-NOTICE
{
  echo "Apache ECharts $version, from npm (echarts@$version), dist/echarts.min.js"
  echo "npm integrity: $integrity"
  echo "sha256 of echarts.min.js: $(sha256sum vendor/echarts.min.js | cut -d' ' -f1)"
  echo "licence: Apache-2.0 (ECHARTS-LICENSE, ECHARTS-NOTICE)"
  echo "made by: crates/node/assets/vendor.sh $version"
} >vendor/ECHARTS-VERSION
echo "vendored echarts $version into $(pwd)/vendor"
