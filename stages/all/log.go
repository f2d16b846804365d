package all

import _ "github.com/ds01/ds01-pipe/stages/log" // register the log stage
