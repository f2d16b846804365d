pipeline "x" {
  gpu {
    backend  = "sim"
    sim_file = "."
  }
  stage "discover" {}
}
