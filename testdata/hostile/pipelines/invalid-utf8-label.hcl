pipeline "xÿ" {
  stage "discover" {}
}
