# Containers nobody can attribute: no ds01.user, aime.mlc.USER or
# devcontainer.local_folder label, no ._.<uid> name. With what little is known
# about them: image, times, type, GPUs, exemption and every label. Read-only:
# nothing is removed, released or logged. docs/audits.md shows an example.
#
#   ds01-pipe plan pipelines/audit-unattributed.hcl --var report=/tmp/unattributed.md

variable "prefix" {
  default = ""
}

variable "report" {
  default     = "-"
  description = "where the Markdown table goes (\"-\" = standard output)"
}

variable "format" {
  default = "markdown"
}

pipeline "audit-unattributed" {
  description = "List the containers whose owner is unknown"
  timeout     = "2m"

  # Members of DS01's ds-admin may write the files this pipeline reads
  # (/opt/ds01-infra is root:ds-admin, group-writable); without that group,
  # root alone is trusted.
  trusted_groups = ["ds-admin"]

  gpu {
    backend = "none"
  }

  stage "discover" {
    name_prefix = var.prefix
  }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "filter" {
    when = c.owner_source == "unknown"
  }
  stage "report" {
    format  = var.format
    path    = var.report
    columns = ["id", "name", "state", "image", "created", "finished_at", "type", "gpus", "exempt", "labels"]
  }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
