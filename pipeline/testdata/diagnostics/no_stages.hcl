pipeline "p" { # ERROR: Pipeline has no stages
}
