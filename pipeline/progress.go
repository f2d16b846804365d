package pipeline

import (
	"fmt"
	"time"
)

// ProgressEvery is how long a stage runs before progress is logged.
const ProgressEvery = 2 * time.Second

// Progress is a runner hook: while a stage runs longer than Every, a line
// per period says how far it got (in Docker calls), and a last line says
// how long it took. Stages that finish sooner stay silent.
type Progress struct {
	Every time.Duration

	start   time.Time
	stop    chan struct{}
	stopped chan struct{}
}

// NewProgress returns a progress hook with period every.
func NewProgress(every time.Duration) *Progress { return &Progress{Every: every} }

// Before starts the ticker of one stage.
func (p *Progress) Before(env *Env, st StageInstance, _ *Batch) {
	p.start = time.Now()
	p.stop, p.stopped = nil, nil
	if env.Log == nil {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func(stop, stopped chan struct{}) {
		defer close(stopped)
		t := time.NewTicker(p.Every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				env.Log.Infof("%s: running for %s (Docker calls so far: %s)", st.Ref, time.Since(p.start).Round(time.Second), calls(env))
			}
		}
	}(p.stop, p.stopped)
}

// After stops the ticker and, for a slow stage, logs how long it took.
func (p *Progress) After(env *Env, st StageInstance, b *Batch) {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	if d := time.Since(p.start); d >= p.Every {
		env.Log.Infof("%s: done in %s, %d containers (Docker calls so far: %s)", st.Ref, d.Round(100*time.Millisecond), len(b.Records), calls(env))
	}
}

func calls(env *Env) string {
	if env.Stats == nil {
		return "not counted"
	}
	return fmt.Sprintf("%d list, %d inspect, %d remove", env.Stats.ListCalls.Load(), env.Stats.InspectCalls.Load(), env.Stats.RemoveCalls.Load())
}
