pipeline "p" {
  stage "discover" {
    name_prefx = "x" # ERROR: Unsupported argument
  }
}
