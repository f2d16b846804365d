pipeline "x" {
  timeout = "0s"
  stage "discover" {}
}
