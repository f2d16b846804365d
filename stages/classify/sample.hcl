stage "classify" {
  # No attributes: the type rules are DS01's, and the policy's
  # container_types.<type> entries say what each type means.
}
