pipeline "p" {
  stage "discover" {
    workers = 0 # ERROR: Invalid discover stage
  }
}
