pipeline "x" {
  timeout = shell("rm -rf /")
  stage "discover" {}
}
