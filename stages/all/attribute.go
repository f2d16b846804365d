package all

import _ "github.com/ds01/ds01-pipe/stages/attribute" // register the attribute stage
