package all

import _ "github.com/ds01/ds01-pipe/stages/filter" // register the filter stage
