package all

import _ "github.com/ds01/ds01-pipe/stages/discover" // register the discover stage
