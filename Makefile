# ds01-pipe. `make test` is the project's test command (.ci/run calls it).

GO          ?= go
GOFMT       ?= gofmt
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN         := bin/ds01-pipe

# Link lazily: go-nvml resolves libnvidia-ml symbols at run time, and with
# -z now (bindnow hardening) the binary would die at start on hosts without
# the NVIDIA driver (DESIGN.md section 4).
LDFLAGS := -X main.version=$(VERSION) -extldflags=-Wl,-z,lazy

.PHONY: all build test vet lint fmt-check staticcheck clean

all: build

build:
	$(GO) build -o $(BIN) -ldflags "$(LDFLAGS)" ./cmd/ds01-pipe

# Integration tests need a running Docker engine as root (.ci/run starts one).
test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

lint: fmt-check staticcheck

# Package directories only (go list skips testdata/, which may hold
# deliberately malformed files).
fmt-check:
	@dirs="$$($(GO) list -e -f '{{.Dir}}' ./...)" || exit 1; \
	out="$$(for d in $$dirs; do $(GOFMT) -l "$$d"/*.go || exit 1; done)" || { echo "gofmt failed"; exit 1; }; \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi

# Pinned in .ci/run: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck:
	$(STATICCHECK) ./...

clean:
	rm -rf bin/

# install, deb, bench, fuzz: see below
