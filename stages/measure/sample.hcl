stage "measure" {
  workers   = 128     # stats calls in parallel (1 to 512)
  proc_root = "/proc" # GPU processes are mapped to containers through <proc_root>/<pid>/cgroup
}
