// Package deploy holds no code. Its folder is what ds01-pipe ships besides
// the binary, and the tests here check it:
//
//   - systemd/: ds01-pipe@.service (one run of
//     /etc/ds01-pipe/pipelines/<instance>.hcl) and ds01-pipe@.timer (every
//     15 minutes); TestUnitsStructure pins the settings the run depends on,
//     TestUnitsVerify runs `systemd-analyze verify` on them.
//   - nfpm.yaml and deb/: the Debian package that `make deb` builds
//     (TestMakeDeb); it installs and enables nothing.
//   - ds01/resource-limits.yaml: DS01's reference limits file, installed as
//     $(PREFIX)/share/ds01-pipe/ds01/ so that a host without DS01 can try
//     the shipped cleanup pipeline (TestMakeInstall).
//   - README-sections.md: the operations chapters of the README.
package deploy
