pipeline "x" {
  stage "discover" { labels = "ds01.user=alice" }
}
