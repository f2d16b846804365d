package dockertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestEnsureImageConcurrent imports one fresh tag from several goroutines at
// once, as parallel test binaries do with the probe tag: none may fail.
func TestEnsureImageConcurrent(t *testing.T) {
	t.Parallel()
	e := New(t)
	arch, err := buildProbe()
	if err != nil {
		t.Fatal(err)
	}
	ref := ImageRepo + "-locktest:" + randomHex(6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := e.Client().ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove %s: %v", ref, err)
		}
	})

	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), importTimeout)
			defer cancel()
			errs[i] = ensureImage(ctx, e.Client(), ref, arch.tar)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("import %d: %v", i, err)
		}
	}
	ok, err := hasImage(t.Context(), e.Client(), ref)
	if err != nil || !ok {
		t.Fatalf("image %s after the imports: present %v, error %v", ref, ok, err)
	}
}
