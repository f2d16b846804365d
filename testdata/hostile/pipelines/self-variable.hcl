variable "a" { default = "${var.a}${var.a}" }
pipeline "x" {
  stage "discover" { name_prefix = var.a }
}
