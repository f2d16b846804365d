pipeline "x" {
  stage "remove" { workers = 99999999999999999999999999999999 }
}
