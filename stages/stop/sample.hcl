stage "stop" {
  workers   = 16      # containers stopped in parallel (1 to 64)
  syslog    = true    # ds01-idle / ds01-maxruntime lines for confirmed stops
  proc_root = "/proc" # GPU processes are mapped to containers through <proc_root>/<pid>/cgroup
}
