pipeline "x" {
  timeout = "9999999999999h"
  stage "discover" {}
}
