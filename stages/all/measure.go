package all

import _ "github.com/ds01/ds01-pipe/stages/measure" // register the measure stage
