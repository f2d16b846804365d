stage "lifecycle" {
  state_dir      = "/var/lib/ds01-pipe"     # the state store (root's, mode 0700)
  keepalive_file = "/workspace/.keep-alive" # modified within 24h: no idle stop ("" = off)
}
