stage "discover" {
  name_prefix = "thesis-"                  # anchored; "" = every container
  labels      = { "ds01.managed" = "true" } # all must match
  states      = ["created", "exited"]       # default: every state
  workers     = 8
}
