pipeline "p" {
  policy { # ERROR: Missing limits_file
    groups_dir = "/nonexistent"
  }
  stage "discover" {}
}
