pipeline "x" {
  timeout = "Inf"
  stage "discover" {}
}
