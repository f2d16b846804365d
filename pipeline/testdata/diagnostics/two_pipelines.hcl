pipeline "a" {
  stage "discover" {}
}
pipeline "b" { # ERROR: More than one pipeline block
  stage "discover" {}
}
