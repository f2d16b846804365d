pipeline "p" {
  gpu {
    backend = "nvlm" # ERROR: Unknown GPU backend
  }
  stage "discover" {}
}
