// Package slurm holds no code. Its folder ships the Slurm health check,
// slurm-healthcheck, which `make install` and the Debian package put at
// /usr/lib/ds01-pipe/slurm-healthcheck for slurm.conf's HealthCheckProgram
// (docs/fleet.md).
//
// The tests here run it against a real Slurm cluster on one machine: munge
// with its own key and socket, slurmctld and two slurmd nodes (n1, n2) on
// their own ports and folders, each node with its own GPU simulation file.
package slurm
