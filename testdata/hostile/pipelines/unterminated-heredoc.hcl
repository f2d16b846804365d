pipeline "x" {
  description = <<EOT
never ends
  stage "discover" {}
}
