pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "decide" {}
  stage "release" { # ERROR: Missing stage
    kill_orphans = true
  }
  stage "log" { syslog = false }
}
