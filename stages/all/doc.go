// Package all registers every stage kind compiled into ds01-pipe. Each
// file holds one blank import, so adding a stage is a one-file change.
package all
