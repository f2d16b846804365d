// Command floor is the Docker API floor of a ds01-pipe plan: the least a
// program must do to know every container in scope. It lists the
// containers once (All, the same anchored name filter discover builds) and
// inspects each of them on a pool of -workers goroutines, decoding every
// answer, then prints how many it inspected. No policy, no report, no
// GPU view: what ds01-pipe spends above this is its own cost.
//
// The benchmark driver (internal/bench) runs it interleaved with
// `ds01-pipe plan` on the same fixtures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
)

func main() {
	os.Exit(run())
}

func run() int {
	prefix := flag.String("name-prefix", "", "only containers whose name starts with this (anchored, as discover's name_prefix)")
	workers := flag.Int("workers", 8, "parallel inspect calls")
	timeout := flag.Duration("timeout", 5*time.Minute, "deadline of the whole run")
	flag.Parse()
	if *workers < 1 {
		fmt.Fprintln(os.Stderr, "floor: -workers must be at least 1")
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	defer cli.Close()

	filters := make(client.Filters)
	if *prefix != "" {
		filters.Add("name", "^/"+regexp.QuoteMeta(*prefix))
	}
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor: list:", err)
		return 1
	}

	ids := make(chan string)
	var wg sync.WaitGroup
	var inspected, failed atomic.Int64
	for range min(*workers, max(len(list.Items), 1)) {
		wg.Go(func() {
			for id := range ids {
				if _, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err != nil {
					failed.Add(1)
					continue
				}
				inspected.Add(1)
			}
		})
	}
	for _, c := range list.Items {
		ids <- c.ID
	}
	close(ids)
	wg.Wait()

	fmt.Printf("listed=%d inspected=%d failed=%d\n", len(list.Items), inspected.Load(), failed.Load())
	if failed.Load() > 0 {
		return 1
	}
	return 0
}
