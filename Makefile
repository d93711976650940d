# CountApp. `make` installs what is missing, builds, and runs the cluster with ./config.yaml.
CONFIG ?= config.yaml
NODE   ?= node

.PHONY: all run build install typecheck tests test bench bench-short openapi clean

all: run

# npm writes node_modules/.package-lock.json on every install: reinstall only when the lockfile changed.
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

dist/.built: node_modules/.package-lock.json tsconfig.json $(shell find coordinator worker shared bench test/helpers -name '*.ts' 2>/dev/null)
	npx tsc -p tsconfig.json
	@chmod +x dist/coordinator/main.js
	@touch $@

build: dist/.built

run: build
	$(NODE) dist/coordinator/main.js --config $(CONFIG)

# vitest runs the tests' TypeScript without checking its types: tsc does, over test/ and what it imports.
typecheck: install
	npx tsc -p tsconfig.test.json

tests: build typecheck
	npx vitest run

test: tests

bench: build
	$(NODE) dist/bench/main.js

# A few seconds of every benchmark, so CI notices when the harness breaks (figures meaningless).
bench-short: build
	$(NODE) dist/bench/main.js --short

# openapi/*.json are the servers' OpenAPI documents as the code builds them (a test checks they are current).
openapi: build
	$(NODE) --input-type=module -e "import fs from 'node:fs'; import { openApiText } from './dist/shared/openapi.js'; for (const role of ['coordinator', 'worker']) fs.writeFileSync('openapi/' + role + '.json', openApiText(role));"

clean:
	rm -rf dist db logs bench-results test-results
