stage "release" {
  # "release": clear the GPUs of containers about to be removed once NVML
  # shows nothing of theirs still running there. "audit": report only.
  mode = "release"

  # Kill orphaned GPU processes (in no live container), only on the GPUs
  # this run released through engine-enforced claims, after the removal is
  # confirmed: SIGTERM, then SIGKILL after kill_grace. Needs a later
  # "remove" stage. Off by default; orphans are always reported (gpu.orphan).
  kill_orphans = false
  kill_grace   = "10s"

  # Where the host's /proc is mounted (PIDs are mapped to containers there).
  proc_root = "/proc"
}
