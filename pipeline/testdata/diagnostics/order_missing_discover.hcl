pipeline "p" {
  gpu { backend = "none" }
  stage "attribute" {} # ERROR: Missing stage
}
