stage "exempt" {
  # ds01.monitoring = "true" and ds01.protected = "true" always exempt;
  # these labels add to them.
  labels = {
    "team.keep" = "true"
  }
  names                     = ["ds01-backup"]
  name_prefixes             = ["ds01-"]
  infrastructure_containers = true # the policy's monitoring.infrastructure_containers
}
