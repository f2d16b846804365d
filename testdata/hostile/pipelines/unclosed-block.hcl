pipeline "x" {
  stage "discover" {}
