pipeline "p" {
  stage "discover" {}
  stage "discover" {} # ERROR: Duplicate stage
}
