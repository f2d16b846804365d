# The DS01 container cleanup, run by ds01-pipe@cleanup.timer every 15 minutes.
#
# It replaces cleanup-stale-containers.sh and cleanup-stale-gpu-allocations.sh:
# created-never-started containers go after created_container_timeout_m,
# exited containers after their owner's container_hold_after_stop_h,
# idle-stopped containers at once; GPUs are released only after NVML confirms
# nothing of the container still runs on them.
#
# Try it without touching anything:   ds01-pipe plan pipelines/cleanup.hcl
# Point it elsewhere with --var, e.g.  --var ds01_config=/srv/ds01/config/runtime

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
  description = "Prometheus textfile, e.g. /var/lib/prometheus/node-exporter/ds01_pipe.prom"
}

variable "lock_file" {
  default = "/run/ds01-pipe/cleanup.lock"
}

variable "gpu_backend" {
  default = "auto"
}

variable "sim_file" {
  default = ""
}

pipeline "cleanup" {
  description = "Remove stale containers and release their GPUs"
  timeout     = "5m"
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
  }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "decide" {
    idle_events_file = var.events_file
  }
  stage "release" {
    kill_orphans = false
  }
  stage "remove" {}
  stage "log" {
    events_file  = var.events_file
    metrics_file = var.metrics_file
    syslog       = true
  }
}
