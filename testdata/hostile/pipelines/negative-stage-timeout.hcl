pipeline "x" {
  stage "discover" { timeout = "-1s" }
}
