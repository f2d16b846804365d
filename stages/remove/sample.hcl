stage "remove" {
  workers        = 4     # containers re-inspected and removed in parallel (1 to 64)
  remove_volumes = false # true: also remove anonymous volumes (docker rm -v)
}
