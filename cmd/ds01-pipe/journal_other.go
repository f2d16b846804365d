//go:build !unix

package main

import "os"

// isJournalStream is always false where there is no systemd.
func isJournalStream(*os.File, string) bool { return false }
