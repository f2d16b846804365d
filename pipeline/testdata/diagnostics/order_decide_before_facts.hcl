pipeline "p" {
  gpu { backend = "none" }
  stage "decide" {} # ERROR: Stage out of order
  stage "discover" {}
}
