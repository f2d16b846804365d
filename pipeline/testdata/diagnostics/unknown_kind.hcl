pipeline "p" {
  stage "discovr" {} # ERROR: Unknown stage kind
}
