package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestNotAttempted(t *testing.T) {
	done := &Record{Outcome: Outcome{Status: OutcomeRemoved}}
	left := &Record{}
	pending := func(r *Record) bool { return r.Outcome.Status == OutcomeNone }

	if err := NotAttempted(context.Background(), nil, []*Record{done}, "containers to remove", pending); err != nil {
		t.Fatalf("all attempted: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NotAttempted(ctx, errors.New("pool"), []*Record{done, left}, "containers to remove", pending)
	if err == nil || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "1 of 2 containers to remove were not attempted") {
		t.Errorf("cancelled: %v, want 1 of 2 with the context's cause", err)
	}
	poolErr := errors.New("pool failed")
	if err := NotAttempted(context.Background(), poolErr, []*Record{left}, "containers to stop", pending); !errors.Is(err, poolErr) {
		t.Errorf("pool: %v, want the pool's error", err)
	}
}
