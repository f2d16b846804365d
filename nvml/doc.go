// Package nvml is ds01-pipe's view of the GPUs: devices, MIG slices, the
// compute processes on each, and the mapping of those processes to Docker
// containers through /proc.
//
// # Back ends
//
// Open picks one of three back ends (plus "auto", which picks for you):
//
//   - "nvml" reads the real driver through github.com/NVIDIA/go-nvml.
//   - "sim" reads a JSON simulation file (docs/gpu-simulation.md), so every
//     stage above this package can be tested on machines without GPUs. The
//     file is validated when it is opened; its PIDs are host PIDs, so a test
//     can name a real container's process and exercise the /proc mapping.
//   - "none" has no GPU view at all.
//
// "auto" is "nvml" when the library loads and initialises, else "none" with
// the reason. An unavailable view is not an error: the snapshot says
// Available=false and why, and the caller decides (its "required" flag)
// whether that ends the run.
//
// # One snapshot per run
//
// A run takes one Snapshot and decides from it. Every NVML call can block
// for a while on a busy host, and the release stage must reconcile Docker's
// records against one consistent picture, not against devices read at
// different moments. Snapshot.Queries counts what the picture cost: each
// device and slice is queried once, its processes listed once.
//
// # go-nvml safety rules
//
//   - The library is loaded lazily: go-nvml dlopens libnvidia-ml.so.1 inside
//     Init, so a binary starts on a host without the driver, and Init
//     returns ERROR_LIBRARY_NOT_FOUND there.
//   - After a failed Init nothing else is called, not even Shutdown: calling
//     into a library that did not load ends the process with exit 127.
//   - Nothing is called after Close (Shutdown); the backend refuses.
//   - Only calls that read state are made.
//
// # Building
//
// The NVML back end needs cgo (gcc at build time; no GPU to build or test).
// With CGO_ENABLED=0 the package still builds and "nvml" reports itself
// unavailable. go-nvml leaves the NVML symbols unresolved until Init, so
// link lazily, as NVIDIA's own projects do:
//
//	go build -ldflags=-extldflags=-Wl,-z,lazy ./cmd/ds01-pipe
//
// With "-z now" (bindnow hardening) the binary dies at start on hosts
// without the driver. A cgo binary built on Debian 12 needs glibc >= 2.34 on
// the GPU server (Ubuntu 22.04 yes, 20.04 no): build releases on the oldest
// supported target.
package nvml
