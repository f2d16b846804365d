pipeline "p" {
  timeout = duration("ten minutes") # ERROR: Invalid function argument
  stage "discover" {}
}
