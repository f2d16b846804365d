package all

import _ "github.com/ds01/ds01-pipe/stages/lifecycle" // register the lifecycle stage
