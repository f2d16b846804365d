pipeline "x" {
  stage "discover; rm -rf /" {}
}
