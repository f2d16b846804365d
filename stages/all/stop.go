package all

import _ "github.com/ds01/ds01-pipe/stages/stop" // register the stop stage
