stage "decide" {
  # How long a created-but-never-started container may exist, GPU or not.
  # "" takes policies.created_container_timeout_m from the policy files
  # (30m if unset, no limit if null); a Go duration ("45m") or "never"
  # overrides it.
  created_timeout = ""

  # Post-stop hold of exited containers nobody can be attributed to.
  # "" takes the policy's chain: container_types.<type>, then
  # container_types.unknown, then defaults, then 30m.
  unknown_owner_hold = ""

  # DS01's event log. A container the idle checker stopped
  # (maintenance.idle_kill) is removed at once, with no hold.
  # Unset, it is the log stage's events_file (or /var/log/ds01/events.jsonl
  # without a log stage); "" turns that rule off. As root, a file that
  # users can write is not trusted: its idle kills are ignored.
  # idle_events_file = "/var/log/ds01/events.jsonl"
}
