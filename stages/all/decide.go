package all

import _ "github.com/ds01/ds01-pipe/stages/decide" // register the decide stage
