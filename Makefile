# ds01-pipe. `make test` is the project's test command (.ci/run calls it).

GO          ?= go
GOFMT       ?= gofmt
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN         := bin/ds01-pipe

# Link lazily: go-nvml resolves libnvidia-ml symbols at run time, and with
# -z now (bindnow hardening) the binary would die at start on hosts without
# the NVIDIA driver (NOTES.md, GPU view and release).
LDFLAGS := -X main.version=$(VERSION) -extldflags=-Wl,-z,lazy

# go-nvml's nvml.h marks functions deprecated that its bindings still wrap,
# and gcc warns about each one on every cold build: dozens of lines that
# read as errors to a new user and hide real ones. Go's own defaults (-O2
# -g) are kept; a CGO_CFLAGS from the environment wins.
CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export CGO_CFLAGS

.PHONY: setup all build test test-clean vet lint fmt-check staticcheck clean

all: build

build:
	$(GO) build -o $(BIN) -ldflags "$(LDFLAGS)" ./cmd/ds01-pipe

# Integration tests need a running Docker engine as root (.ci/run starts one).
# go test prints one line per package as each finishes (nothing here may
# hide or buffer them). Afterwards the probe images the tests imported into
# the engine and the harness's import lock are removed, pass or fail.
PROBE_IMAGE  := ds01-pipe-probe
PROBE_LOCK   := $(or $(TMPDIR),/tmp)/ds01-pipe-probe-import.lock

test:
	@rc=0; $(GO) test -race -count=1 -timeout 25m ./... || rc=$$?; \
	$(MAKE) --no-print-directory test-clean; exit $$rc

# Only the probe images: the tests' containers remove themselves.
test-clean:
	@ids=$$(docker images -q $(PROBE_IMAGE) 2>/dev/null | sort -u); \
	if [ -n "$$ids" ]; then docker rmi -f $$ids >/dev/null && echo "removed the test probe images ($(PROBE_IMAGE))"; fi; \
	rm -f $(PROBE_LOCK)

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

# docs/stages.md is generated from the stage specs; internal/docgen's test
# fails when the checked-in file is stale, so CI catches drift.
.PHONY: docs
docs:
	$(GO) run ./internal/docgen/gen

# install, deb, bench, fuzz: see below

# --- bench, bench-smoke, gobench (internal/bench/RESULTS.md) ---------------
# bench and bench-smoke need a running Docker engine (as for `make test`);
# they create and remove only their own containers (label ds01-pipe.bench=1,
# names ds01bench-*). Targets are judged in the printed report, never in
# `go test`. `make bench` includes a host of 10,000 containers (peak RSS
# and plan against the floor there; creating them takes about half an hour
# on 2 cores, so keep them with -keep). More flags through BENCH_FLAGS, for
# example
#   make bench BENCH_FLAGS="-out bench.md -keep"
#   make bench BENCH_FLAGS='-rss-sizes ""'   # without the 10,000
BENCH_FLAGS ?=

.PHONY: bench bench-smoke gobench

bench:
	$(GO) run ./internal/bench -ldflags "$(LDFLAGS)" $(BENCH_FLAGS)

# Every code path of bench at a tiny size, in about a minute.
bench-smoke:
	$(GO) run ./internal/bench -ldflags "$(LDFLAGS)" -sizes 20 -rss-sizes "" -repeat 1 \
		-removal-size 20 -sweep-size 20 -sweep-repeat 1 $(BENCH_FLAGS)

# Go benchmarks of the pure hot parts (owner and type rules, policy lookups,
# decide, events encoding, GPU claims, the JSON report); no Docker needed.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# --- man, completion, install, uninstall, deb (README: Install) ---
# make install [PREFIX=/usr/local] [DESTDIR=/staging]: the binary, the
# systemd units (in $(PREFIX)/lib/systemd/system, on systemd's unit path,
# leaving /etc/systemd/system to the admin's own units and drop-ins), man
# pages, shell completion, the DS01 reference resource-limits.yaml, and the
# shipped pipelines in /etc/ds01-pipe/pipelines (an existing pipeline that
# differs is kept, the shipped one goes beside it as .hcl.new). Nothing is
# enabled or started.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share/ds01-pipe
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR  ?= /etc
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
BUILDDIR    ?= bin/build
DISTDIR     ?= dist
# The path ExecStart= names in deploy/systemd/ds01-pipe@.service (and the
# Slurm health check its default binary); install and deb rewrite it to
# where they put the binary.
UNIT_BIN    := /usr/local/bin/ds01-pipe
# The Slurm health check, for slurm.conf's HealthCheckProgram: one path on
# every node whatever the PREFIX, because slurm.conf is the same on all
# nodes (docs/fleet.md).
SLURMLIBDIR ?= /usr/lib/ds01-pipe
UNITS       := ds01-pipe@.service ds01-pipe@.timer
PIPELINES   := $(wildcard pipelines/*.hcl)
# Man page dates: the last commit's time, so the pages are reproducible.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

# nfpm is a tool dependency of the module (`tool` in go.mod), so its version
# is pinned with the others and go.sum checks it: `go tool nfpm`.
NFPM         ?= $(GO) tool nfpm
DEB_ARCH     ?= amd64
# Debian version from git describe: tag v1.2.3 -> 1.2.3, 4 commits after it
# -> 1.2.3+git4.gabcdef0; no tag -> 0.0.0~git<commit date>.<hash>.
DEB_VERSION  ?= $(shell d=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && \
	echo "$$d" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f]*\)$$/+git\1.g\2/' || \
	echo "0.0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")

.PHONY: man completion units install uninstall deb clean-deploy

man: build
	rm -rf $(BUILDDIR)/man
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN) __man $(BUILDDIR)/man >/dev/null

completion: build
	mkdir -p $(BUILDDIR)/completion
	$(BIN) completion bash >$(BUILDDIR)/completion/ds01-pipe
	$(BIN) completion zsh >$(BUILDDIR)/completion/_ds01-pipe
	$(BIN) completion fish >$(BUILDDIR)/completion/ds01-pipe.fish

# The units with ExecStart= pointing at $(BINDIR)/ds01-pipe.
units:
	mkdir -p $(BUILDDIR)/systemd
	for u in $(UNITS); do \
		sed 's|$(UNIT_BIN)|$(BINDIR)/ds01-pipe|g' "deploy/systemd/$$u" >"$(BUILDDIR)/systemd/$$u" || exit 1; \
	done
	mkdir -p $(BUILDDIR)/slurm
	sed 's|$(UNIT_BIN)|$(BINDIR)/ds01-pipe|g' deploy/slurm/slurm-healthcheck >$(BUILDDIR)/slurm/slurm-healthcheck

# setup: what the README's first line needs on a fresh machine: a Docker
# engine that answers, then the installed tool.
setup:
	deploy/ensure-docker.sh
	$(MAKE) install

install: build man completion units
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
		$(DESTDIR)$(DATADIR)/ds01 $(DESTDIR)$(SYSCONFDIR)/ds01-pipe/pipelines
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/ds01-pipe
	for u in $(UNITS); do install -m 0644 "$(BUILDDIR)/systemd/$$u" "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; done
	install -m 0644 $(BUILDDIR)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BUILDDIR)/completion/ds01-pipe $(DESTDIR)$(BASHCOMPDIR)/ds01-pipe
	install -m 0644 $(BUILDDIR)/completion/_ds01-pipe $(DESTDIR)$(ZSHCOMPDIR)/_ds01-pipe
	install -m 0644 $(BUILDDIR)/completion/ds01-pipe.fish $(DESTDIR)$(FISHCOMPDIR)/ds01-pipe.fish
	install -m 0644 deploy/ds01/resource-limits.yaml $(DESTDIR)$(DATADIR)/ds01/resource-limits.yaml
	install -d $(DESTDIR)$(SLURMLIBDIR)
	install -m 0755 $(BUILDDIR)/slurm/slurm-healthcheck $(DESTDIR)$(SLURMLIBDIR)/slurm-healthcheck
	@for f in $(PIPELINES); do \
		dst="$(DESTDIR)$(SYSCONFDIR)/ds01-pipe/pipelines/$$(basename "$$f")"; \
		if [ ! -e "$$dst" ]; then \
			install -m 0644 "$$f" "$$dst" && echo "installed $$dst" || exit 1; \
		elif cmp -s "$$f" "$$dst"; then \
			echo "unchanged $$dst"; \
		else \
			install -m 0644 "$$f" "$$dst.new" || exit 1; \
			echo "NOTE: $$dst differs from the shipped pipeline: kept it; the shipped one is $$dst.new (compare them: diff -u $$dst $$dst.new)"; \
		fi; \
	done
	@[ -d "$(DESTDIR)/var/log/ds01" ] || install -d -m 0755 "$(DESTDIR)/var/log/ds01"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "ds01-pipe installed in $(DESTDIR)$(BINDIR). Nothing is scheduled yet: look first (plan touches nothing)"
	@# Without DS01's configuration the pipeline's default ds01_config is
	@# missing: point the hint at the reference limits installed above.
	@v=""; [ -e /opt/ds01-infra/config/runtime/resource-limits.yaml ] || v=" --var ds01_config=$(DATADIR)/ds01"; \
	echo "  $(BINDIR)/ds01-pipe plan $(SYSCONFDIR)/ds01-pipe/pipelines/cleanup.hcl$$v"; \
	echo "act once: the same command with run instead of plan; every 15 minutes: systemctl enable --now ds01-pipe@cleanup.timer"

# Leaves /etc/ds01-pipe (the admin's pipelines) and /var/log/ds01 alone.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && \
		systemctl list-units --all --plain --no-legend 'ds01-pipe@*.timer' 2>/dev/null | grep -q .; then \
		echo "NOTE: ds01-pipe timers are still loaded; run: systemctl disable --now 'ds01-pipe@*.timer'"; \
	fi
	rm -f $(DESTDIR)$(BINDIR)/ds01-pipe
	for u in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$$u"; done
	rm -f $(DESTDIR)$(MANDIR)/man1/ds01-pipe.1 $(DESTDIR)$(MANDIR)/man1/ds01-pipe-*.1
	rm -f $(DESTDIR)$(BASHCOMPDIR)/ds01-pipe $(DESTDIR)$(ZSHCOMPDIR)/_ds01-pipe $(DESTDIR)$(FISHCOMPDIR)/ds01-pipe.fish
	rm -rf $(DESTDIR)$(DATADIR)
	rm -f $(DESTDIR)$(SLURMLIBDIR)/slurm-healthcheck
	rmdir $(DESTDIR)$(SLURMLIBDIR) 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/ds01-pipe (pipelines) and $(DESTDIR)/var/log/ds01"

# The Debian package: the same files under /usr, units in /lib/systemd/system,
# the pipelines copied to /etc by postinst (deploy/deb/postinst says why they
# are not conffiles); a stripped PIE binary, the copyright and a changelog.
# It enables and starts nothing (deploy/deb/).
deb: build man completion
	@[ "$$($(GO) env GOARCH)" = "$(DEB_ARCH)" ] || { echo "make deb: the binary is built for $$($(GO) env GOARCH), not DEB_ARCH=$(DEB_ARCH)"; exit 1; }
	rm -rf $(BUILDDIR)/deb
	$(MAKE) --no-print-directory units BINDIR=/usr/bin BUILDDIR=$(BUILDDIR)/deb
	mkdir -p $(BUILDDIR)/deb/man $(DISTDIR)
	for f in $(BUILDDIR)/man/*.1; do gzip -9n -c "$$f" >"$(BUILDDIR)/deb/man/$$(basename "$$f").gz" || exit 1; done
	$(GO) build -o $(BUILDDIR)/deb/ds01-pipe -buildmode=pie -trimpath -ldflags "$(LDFLAGS) -s -w" ./cmd/ds01-pipe
	sed -e 's|@VERSION@|$(DEB_VERSION)|' \
		-e "s|@COMMIT@|$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)|" \
		-e "s|@DATE@|$$(date -u -R -d @$(SOURCE_DATE_EPOCH))|" deploy/deb/changelog.in | gzip -9n >$(BUILDDIR)/deb/changelog.gz
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' DS01_PIPE_BIN='$(BUILDDIR)/deb/ds01-pipe' DS01_PIPE_BUILD='$(BUILDDIR)' \
		$(NFPM) pkg --config deploy/nfpm.yaml --packager deb --target $(DISTDIR)/
	@ls -1 $(DISTDIR)/ds01-pipe_*.deb

clean: clean-deploy
clean-deploy:
	rm -rf $(BUILDDIR) $(DISTDIR)

# --- fuzz ---------------------------------------------------------------------
# make fuzz [FUZZTIME=30s]: every fuzz target of the module (the Fuzz*
# functions of its _test.go files), one after another, FUZZTIME each: go test
# -fuzz runs one target of one package at a time. A failing input is saved in
# that package's testdata/fuzz/<target>/ (keep it there once fixed: it becomes
# part of the seed corpus); the other targets still run and make fails at the
# end, naming the targets that failed. The fuzzer shrinks each new input it
# finds before going on (execs stay flat meanwhile); FUZZMINIMIZETIME bounds
# that, so a short FUZZTIME is spent fuzzing.
FUZZTIME         ?= 30s
FUZZMINIMIZETIME ?= 10s

.PHONY: fuzz

fuzz:
	@failed=""; \
	for file in $$(find . -name '*_test.go' -not -path '*/testdata/*' -not -path './.git/*' | sort); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			pkg=$$(dirname "$$file"); \
			echo "==== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) "$$pkg" || failed="$$failed $$pkg:$$target"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: FAILED:$$failed"; exit 1; fi; \
	echo "make fuzz: every target ran for $(FUZZTIME) without a failure"
