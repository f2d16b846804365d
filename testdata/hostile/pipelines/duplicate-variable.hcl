variable "p" { default = "a" }
variable "p" { default = "" }
pipeline "x" {
  stage "discover" { name_prefix = var.p }
}
