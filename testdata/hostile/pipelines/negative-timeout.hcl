pipeline "x" {
  timeout = "-5m"
  stage "discover" {}
}
