pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "decide" {} # ERROR: Stage out of order
  stage "attribute" {}
  stage "classify" {}
}
