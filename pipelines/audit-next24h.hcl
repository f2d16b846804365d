# What the cleanup pipeline will remove in the next 24 hours, and why: every
# container that is due now (verdict remove) or whose hold ends within a day
# (left_s <= 86400), with the rule, the age and the limit. Read-only: it has no
# remove stage and logs nothing. docs/audits.md shows an example.
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

pipeline "audit-next24h" {
  description = "What cleanup will remove in the next 24 hours, and why"
  timeout     = "2m"

  policy {
    limits_file     = "${var.ds01_config}/resource-limits.yaml"
    groups_dir      = "${var.ds01_config}/groups"
    overrides_file  = "${var.ds01_config}/user-overrides.yaml"
    exemptions_file = "${var.ds01_config}/lifecycle-exemptions.yaml"
  }

  gpu {
    backend = "none"
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
  stage "filter" {
    # left_s is null for containers without a limit; coalesce makes them "never".
    when = c.verdict == "remove" || (c.verdict == "keep" && coalesce(c.left_s, -1) >= 0 && coalesce(c.left_s, -1) <= seconds(var.horizon))
  }
  stage "report" {
    format  = var.format
    path    = var.report
    columns = ["name", "owner", "owner_source", "type", "state", "verdict", "reason", "rule", "age_s", "limit_s", "left_s"]
  }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
