stage "filter" {
  # Keep exited containers nobody can attribute, stopped for over a day.
  when = c.owner_source == "unknown" && c.state == "exited" && coalesce(c.age_s, 0) > seconds("24h")
}
