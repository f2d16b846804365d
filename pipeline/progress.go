package pipeline

import (
	"context"
	"fmt"
	"time"
)

// ProgressEvery is how long a stage runs before progress is logged.
const ProgressEvery = 2 * time.Second

// withProgress wraps every stage so that, while it runs longer than every,
// a line per period says how far it got (in Docker calls), and a last line
// says how long it took. Stages that finish sooner stay silent.
func withProgress(stages []StageInstance, every time.Duration) []StageInstance {
	out := make([]StageInstance, len(stages))
	for i, st := range stages {
		out[i] = st
		out[i].Stage = progressStage{inner: st.Stage, ref: st.Ref, every: every}
	}
	return out
}

type progressStage struct {
	inner Stage
	ref   StageRef
	every time.Duration
}

func (s progressStage) Process(ctx context.Context, env *Env, batch *Batch) error {
	if env.Log == nil {
		return s.inner.Process(ctx, env, batch)
	}
	start := time.Now()
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				env.Log.Infof("%s: running for %s (Docker calls so far: %s)", s.ref, time.Since(start).Round(time.Second), calls(env))
			}
		}
	}()
	err := s.inner.Process(ctx, env, batch)
	close(stop)
	<-stopped
	if d := time.Since(start); d >= s.every {
		env.Log.Infof("%s: done in %s, %d containers (Docker calls so far: %s)", s.ref, d.Round(100*time.Millisecond), len(batch.Records), calls(env))
	}
	return err
}

// Finalize keeps the wrapped stage's finalizer status.
func (s progressStage) Finalize() bool {
	f, ok := s.inner.(Finalizer)
	return ok && f.Finalize()
}

func calls(env *Env) string {
	if env.Stats == nil {
		return "not counted"
	}
	return fmt.Sprintf("%d list, %d inspect, %d remove", env.Stats.ListCalls.Load(), env.Stats.InspectCalls.Load(), env.Stats.RemoveCalls.Load())
}
