pipeline "p" {
  policy { # ERROR: Invalid policy file
    limits_file = "bad-limits.yaml"
  }
  stage "discover" {}
}
