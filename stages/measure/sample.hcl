stage "measure" {
  workers   = 8       # stats calls in parallel (1 to 64)
  proc_root = "/proc" # GPU processes are mapped to containers through <proc_root>/<pid>/cgroup
}
