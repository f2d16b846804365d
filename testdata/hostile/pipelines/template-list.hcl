pipeline "x" {
  timeout = "${[1, 2]}"
  stage "discover" {}
}
