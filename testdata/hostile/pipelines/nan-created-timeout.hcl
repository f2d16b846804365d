pipeline "x" {
  stage "discover" {}
  stage "decide" { created_timeout = "NaNm" }
}
