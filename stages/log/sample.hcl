stage "log" {
  events_file         = "/var/log/ds01/events.jsonl" # "" writes no events
  syslog              = true                         # ds01-cleanup line per removed container
  metrics_file        = "/var/lib/prometheus/node-exporter/ds01-pipe-cleanup.prom" # "" writes none
  summary             = true                         # one line on stderr
  fail_on_event_error = false                        # true: a lost event fails the run
}
