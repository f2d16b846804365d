pipeline "p" {
  stage "discover" {
    name_prefix "x" # ERROR: Invalid block definition
  }
}
