package all

import _ "github.com/ds01/ds01-pipe/stages/exempt" // register the exempt stage
