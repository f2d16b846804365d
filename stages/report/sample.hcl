stage "report" {
  format  = "csv"                                   # csv | jsonl | markdown
  path    = "/var/lib/ds01-pipe/reports/audit.csv"  # "-" = standard output
  columns = ["name", "owner", "owner_source", "state", "gpus", "verdict", "reason"]
}
