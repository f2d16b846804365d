# What the cleanup and lifecycle pipelines will act on in the next 24 hours,
# and why: every container that is due now (verdict remove or stop) or whose
# limit is reached within a day (0 <= left_s <= 86400), with the rule, the clock,
# the age and the limit. Cleanup's decisions come from decide (created and
# exited containers), lifecycle's from measure and lifecycle (running GPU
# containers: max runtime, and idle timeout if the container stays idle).
# docs/audits.md shows an example.
#
# Run it with plan: it has no remove or stop stage and logs nothing, and in
# plan the lifecycle stage only reads its state store. Under run the lifecycle
# stage would record this run's sample in state_dir, as the lifecycle timer does.
#
#   ds01-pipe plan pipelines/audit-next24h.hcl --var report=/tmp/next24h.csv --var format=csv
#
# ds01-pipe explain CONTAINER pipelines/cleanup.hcl answers for one container.

variable "prefix" {
  default = ""
}

variable "ds01_config" {
  default = "/opt/ds01-infra/config/runtime"
}

variable "events_file" {
  default = "/var/log/ds01/events.jsonl"
}

variable "report" {
  default = "-"
}

variable "format" {
  default = "markdown"
}

variable "horizon" {
  default = "24h"
}

variable "state_dir" {
  default     = "/var/lib/ds01-pipe"
  description = "the lifecycle pipeline's state store (idle streaks, last activity), read only in plan"
}

variable "gpu_backend" {
  default = "auto"
}

variable "sim_file" {
  default = ""
}

pipeline "audit-next24h" {
  description = "What cleanup and lifecycle will act on in the next 24 hours, and why"
  timeout     = "2m"

  # Members of DS01's ds-admin may write the files this pipeline reads
  # (/opt/ds01-infra is root:ds-admin, group-writable); without that group,
  # root alone is trusted.
  trusted_groups = ["ds-admin"]

  policy {
    limits_file     = "${var.ds01_config}/resource-limits.yaml"
    groups_dir      = "${var.ds01_config}/groups"
    overrides_file  = "${var.ds01_config}/user-overrides.yaml"
    exemptions_file = "${var.ds01_config}/lifecycle-exemptions.yaml"
  }

  gpu {
    backend  = var.gpu_backend
    sim_file = var.sim_file
  }

  stage "discover" {
    name_prefix = var.prefix
  }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "decide" {
    idle_events_file = var.events_file
  }
  stage "measure" {}
  stage "lifecycle" {
    state_dir = var.state_dir
  }
  stage "filter" {
    # left_s is null for containers without a limit; coalesce makes them "never".
    when = contains(["remove", "stop"], c.verdict) || (c.verdict == "keep" && coalesce(c.left_s, -1) >= 0 && coalesce(c.left_s, -1) <= seconds(var.horizon))
  }
  stage "report" {
    format  = var.format
    path    = var.report
    columns = ["name", "owner", "owner_source", "type", "state", "verdict", "reason", "rule", "clock", "age_s", "limit_s", "left_s"]
  }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
