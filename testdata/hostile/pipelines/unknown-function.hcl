pipeline "x" {
  stage "discover" { name_prefix = file("/etc/shadow") }
}
