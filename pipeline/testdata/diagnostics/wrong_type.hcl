pipeline "p" {
  stage "discover" {
    workers = "many" # ERROR: Unsuitable value type
  }
}
