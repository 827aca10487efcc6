#!/usr/bin/env bash
# Vendors Swagger UI into this folder from npm's swagger-ui-dist: the files
# the host serves (see README.md), at the version below, checked against the
# integrity npm published for it. To update, change both lines and run it.
set -euo pipefail

VERSION=5.35.0
INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
FILES=(swagger-ui-bundle.js swagger-ui.css favicon-32x32.png
       LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null
tarball="swagger-ui-dist-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
    echo "swagger-ui-dist $VERSION is $actual, not the pinned $INTEGRITY" >&2
    exit 1
fi
tar xzf "$tarball"
for file in "${FILES[@]}"; do
    cp "package/$file" "$here/$file"
done
echo "$VERSION" >"$here/VERSION"
cd "$here" && sha256sum "${FILES[@]}"
