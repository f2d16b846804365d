pipeline "x" {
  stage "discover" { workers = 1e400 }
}
