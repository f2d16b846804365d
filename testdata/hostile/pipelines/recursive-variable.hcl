variable "a" { default = var.b }
variable "b" { default = var.a }
pipeline "x" {
  stage "discover" { name_prefix = var.a }
}
