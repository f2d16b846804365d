pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "decide" {}
  stage "remove" {} # ERROR: Stage out of order
  stage "release" { # ERROR: Missing stage
    kill_orphans = true
  }
}
