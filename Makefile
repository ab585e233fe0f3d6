# Berth: build, demo and tests. Every target works as root on a fresh Debian 12
# machine with Go; `make deps` installs the Debian packages Berth needs.
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := $(CURDIR)/bin
GOFLAGS := -trimpath
LDFLAGS := -s -w
CMDS    := $(notdir $(wildcard cmd/*))

.PHONY: all build deps demo test unit e2e conformance bench lint clean
all: build

deps:
	bash scripts/install-deps.sh

# berth-init runs inside containers' root filesystems: it is built static.
build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(filter-out berth-init,$(CMDS)))
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/berth-init

# The fresh-machine demo: install, build, and run a busybox container.
demo: deps build
	bash scripts/demo.sh

# The whole test suite, as CI runs it.
test: deps build lint unit e2e conformance

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 30m ./internal/... ./cmd/...

e2e:
	BERTH_BIN=$(BIN) $(GO) test -count=1 -timeout 40m ./tests/...

# The OCI runtime-tools validation suite against berth-runtime, checked
# against tests/conformance/expected-pass.txt (--peers: runc and crun too).
conformance: build
	bash scripts/conformance.sh

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BIN)
