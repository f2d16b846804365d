stage "release" {
  # "release": clear the GPUs of containers about to be removed once NVML
  # shows nothing of theirs still running there. "audit": report only.
  mode = "release"

  # Kill orphaned GPU processes (in no container), only on the GPUs this
  # run released: SIGTERM, then SIGKILL after kill_grace. Off by default;
  # orphans are always reported (gpu.orphan).
  kill_orphans = false
  kill_grace   = "10s"

  # Where the host's /proc is mounted (PIDs are mapped to containers there).
  proc_root = "/proc"
}
