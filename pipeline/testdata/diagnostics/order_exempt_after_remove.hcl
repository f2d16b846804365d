pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "remove" {} # ERROR: Stage out of order
  stage "exempt" {}
}
