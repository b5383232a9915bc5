# Thin wrappers around the go command. CI (.ci/run) calls these targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO       ?= go
# Time per fuzz target in fuzz-smoke.
FUZZTIME ?= 10s

.PHONY: check test compat vet fmt-check fuzz-smoke bench

## check: everything CI checks except the benchmark smoke run.
check: vet fmt-check test fuzz-smoke

## test: all tests with the race detector, then the compatibility suite.
test:
	$(GO) test -race ./...
	@$(MAKE) --no-print-directory compat

## compat: the compatibility suite under compat/, once it exists.
compat:
	@if [ -f compat/run.sh ]; then \
		echo "cd compat && ./run.sh"; \
		cd compat && ./run.sh; \
	else \
		echo "compat: no compat/run.sh yet, skipping"; \
	fi

vet:
	$(GO) vet ./...

## fmt-check: fail listing the files gofmt would change.
fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/node_modules/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then \
		echo "gofmt would change these files (run gofmt -w on them):"; \
		echo "$$files"; \
		exit 1; \
	fi

## fuzz-smoke: run every Fuzz* target in the module for FUZZTIME each.
## Targets are found with go test -list, so new ones are picked up without
## editing this file. A failing input is saved under the package's
## testdata/fuzz/ and becomes a regression test: commit it with the fix.
fuzz-smoke:
	@module=$$($(GO) list -m); \
	list=$$($(GO) test -list '^Fuzz' ./...); \
	targets=$$(awk '/^Fuzz/ { names[++n] = $$1; next } \
		/^ok / { for (i = 1; i <= n; i++) print $$2, names[i]; n = 0 }' <<<"$$list"); \
	if [ -z "$$targets" ]; then echo "fuzz-smoke: no fuzz targets found"; exit 0; fi; \
	failed=""; \
	while read -r pkg name; do \
		dir=.$${pkg#"$$module"}; \
		echo "fuzz-smoke: $$name in $$dir for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir" \
			|| failed="$$failed $$dir:$$name"; \
	done <<<"$$targets"; \
	if [ -n "$$failed" ]; then echo "fuzz-smoke: FAILED:$$failed"; exit 1; fi

## bench: run every benchmark once, as a smoke test (not a measurement).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
