#!/bin/sh
# make check-openapi: lint docs/openapi.yaml with Redocly, generate TypeScript
# types from it with openapi-typescript and compile client.ts under
# tsc --strict. The npm packages come from package-lock.json (npm ci). Without
# npm this prints why and succeeds: the Go tests validate the document anyway.
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
	echo "check-openapi: skipped: npm is not installed (the Go tests still validate docs/openapi.yaml with kin-openapi)"
	exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
echo "check-openapi: redocly lint"
./node_modules/.bin/redocly lint ../../docs/openapi.yaml
echo "check-openapi: openapi-typescript + tsc --strict"
./node_modules/.bin/openapi-typescript ../../docs/openapi.yaml -o gen/api.ts
./node_modules/.bin/tsc -p tsconfig.json
echo "check-openapi: ok"
