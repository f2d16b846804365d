stage "measure" {
  workers   = 32      # stats calls in parallel (1 to 128)
  proc_root = "/proc" # GPU processes are mapped to containers through <proc_root>/<pid>/cgroup
}
