# Who holds which GPU, what runs on it, and what leaked. Read-only: nothing is
# removed, released or killed, and events.jsonl is not written.
#
#   ds01-pipe plan pipelines/audit-gpu.hcl
#   ds01-pipe run  pipelines/audit-gpu.hcl --format json | jq '.gpus[] | select(.status != "free")'

variable "prefix" {
  default = ""
}

variable "gpu_backend" {
  default = "auto"
}

variable "sim_file" {
  default = ""
}

pipeline "audit-gpu" {
  description = "Report GPU allocations, processes, orphans and unrecorded use"
  timeout     = "2m"

  # DS01 keeps its configuration under /opt/ds01-infra, owned root:ds-admin
  # and group-writable: members of ds-admin may write the files this
  # pipeline reads. A host without that group trusts root alone.
  trusted_groups = ["ds-admin"]

  gpu {
    backend  = var.gpu_backend
    sim_file = var.sim_file
  }

  stage "discover" {
    name_prefix = var.prefix
  }
  stage "attribute" {}
  stage "classify" {}
  stage "release" {
    mode = "audit"
  }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
