package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// readMaxRSSResult reads what the maxrss program (./maxrss) wrote: the wall
// time and the peak RSS of the program it ran.
func readMaxRSSResult(path string) (sample, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sample{}, fmt.Errorf("maxrss result: %w", err)
	}
	var ns, rss int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d %d", &ns, &rss); err != nil {
		return sample{}, fmt.Errorf("maxrss result %q: %w", b, err)
	}
	return sample{wall: time.Duration(ns), rssKiB: rss}, nil
}
