pipeline "x" {
  stage "discover" {}
  stage "log" { events_file = "/var/log/ds01/" }
}
