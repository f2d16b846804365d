package all

import _ "github.com/ds01/ds01-pipe/stages/release" // register the release stage
