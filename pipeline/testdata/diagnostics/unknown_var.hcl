pipeline "p" {
  stage "discover" {
    name_prefix = var.prefix # ERROR: Unsupported attribute
  }
}
