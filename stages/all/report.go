package all

import _ "github.com/ds01/ds01-pipe/stages/report" // register the report stage
