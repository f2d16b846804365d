stage "notify" {
  terminals      = true                      # the owner's terminals, from utmp
  container_file = "/workspace/.ds01-alerts" # else appended here through the archive API ("" = off)
  webhook_url    = ""                        # optional: POST each notice as JSON
}
