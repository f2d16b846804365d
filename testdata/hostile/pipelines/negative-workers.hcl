pipeline "x" {
  stage "discover" { workers = -8 }
}
