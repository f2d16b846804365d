package all

import _ "github.com/ds01/ds01-pipe/stages/classify" // register the classify stage
