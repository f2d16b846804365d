# DS01's idle detection and max-runtime enforcement, run by
# ds01-pipe@lifecycle.timer every 15 minutes.
#
# It replaces check-idle-containers.sh and enforce-max-runtime.sh: running and
# paused GPU containers (a paused one keeps its GPUs; DS01's `docker ps` listed
# it) are measured (GPU utilisation from NVML, CPU and network from the
# Docker stats counters since the previous run), their owners are warned at
# 80 %/95 % of the idle timeout and 75 %/90 % of the max runtime, and they are
# stopped only after both warnings and the full notice period. Idle-stopped
# containers are removed at once, with their GPUs released; runtime-stopped
# ones are left to the cleanup holds.
#
# Try it without touching anything:   ds01-pipe plan pipelines/lifecycle.hcl
# See what the state store holds:      ds01-pipe state --state-dir /var/lib/ds01-pipe

variable "prefix" {
  default     = ""
  description = "only containers whose name starts with this (\"\" = all)"
}

variable "ds01_config" {
  default     = "/opt/ds01-infra/config/runtime"
  description = "the folder holding resource-limits.yaml, groups/, user-overrides.yaml and lifecycle-exemptions.yaml"
}

variable "events_file" {
  default = "/var/log/ds01/events.jsonl"
}

variable "metrics_file" {
  default     = ""
  description = "Prometheus textfile, e.g. /var/lib/prometheus/node-exporter/ds01_pipe_lifecycle.prom"
}

variable "lock_file" {
  default = "/run/ds01-pipe/lifecycle.lock"
}

variable "gpu_backend" {
  default = "auto"
}

variable "sim_file" {
  default = ""
}

variable "state_dir" {
  default     = "/var/lib/ds01-pipe"
  description = "the lifecycle state store (idle streaks, warnings given, previous stats samples); root's, mode 0700"
}

pipeline "lifecycle" {
  description = "Warn, stop and retire idle or over-long GPU containers"
  timeout     = "10m"
  lock_file   = var.lock_file

  # DS01 keeps its configuration under /opt/ds01-infra, owned root:ds-admin
  # and group-writable: members of ds-admin may write the files this
  # pipeline reads. A host without that group trusts root alone.
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
    required = false
  }

  stage "discover" {
    name_prefix = var.prefix
    # Paused containers are judged like running ones: they hold their GPUs
    # and their clocks run; the stop stage unpauses them as it stops them.
    states = ["running", "paused"]
  }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "measure" {}
  stage "lifecycle" {
    state_dir = var.state_dir
  }
  stage "notify" {}
  stage "stop" {}
  stage "remove" {}
  stage "log" {
    events_file  = var.events_file
    metrics_file = var.metrics_file
    syslog       = true
  }
}
