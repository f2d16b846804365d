package all

import _ "github.com/ds01/ds01-pipe/stages/remove" // register the remove stage
