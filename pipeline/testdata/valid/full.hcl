variable "prefix" {
  default     = "ci-"
  description = "scope"
}
variable "workers" {
  default = 4
}

pipeline "full" {
  description = "everything the language has"
  timeout     = duration("90s")
  lock_file   = "run/full.lock"

  gpu {
    backend  = "none"
    required = false
  }

  stage "discover" {
    name_prefix = var.prefix
    labels      = { "ds01.managed" = "true" }
    workers     = var.workers
    timeout     = "30s"
  }
  stage "discover" {
    name        = "second"
    name_prefix = "${env("DS01_PIPE_TEST_PREFIX")}x"
  }
}
