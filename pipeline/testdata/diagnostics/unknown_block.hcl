pipeline "p" {
  stages "discover" {} # ERROR: Unsupported block type
}
