//go:build !cgo

package nvml

// openNVML reports NVML as unavailable: without cgo there is no binding to
// the library. The reason says so, to tell this apart from a host without a
// driver.
func openNVML() (Backend, string) {
	const reason = "NVML: not in this build (built with CGO_ENABLED=0)"
	return unavailable{name: BackendNVML, reason: reason}, reason
}
