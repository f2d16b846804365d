pipeline "x" {
  timeout = "5m"
  timeout = "1s"
  stage "discover" {}
}
