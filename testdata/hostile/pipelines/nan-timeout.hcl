pipeline "x" {
  timeout = "NaN"
  stage "discover" {}
}
