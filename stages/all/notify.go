package all

import _ "github.com/ds01/ds01-pipe/stages/notify" // register the notify stage
