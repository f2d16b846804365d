pipeline "p" {
  timeout = "5 minutes" # ERROR: Invalid duration for timeout
  stage "discover" {}
}
