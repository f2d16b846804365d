pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "decide" {}
  stage "log" { syslog = false }
  stage "remove" {} # ERROR: Stage after a terminal stage
}
