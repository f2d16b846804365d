pipeline "x" {
  stage "discover" { name_prefix = "caféÿ" }
}
