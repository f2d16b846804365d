pipeline "p" {
  gpu {
    backend = "sim" # ERROR: Missing sim_file
  }
  stage "discover" {}
}
