package remove

import (
	"context"
	"errors"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// errDropped is what the client returns when the connection dropped before
// the answer came: no HTTP status, so no errdefs class.
var errDropped = errors.New("error during connect: read unix @->/var/run/docker.sock: read: connection reset by peer")

// TestLostAnswerIsSettled pins that a removal whose answer never came is
// not assumed to have failed: the engine is asked again, and a container
// that is gone was removed (with its container.remove event), one that is
// still there unchanged look after look was not, one that changed is left
// alone, and only an engine that never answers again makes it a failure
// whose fate is unknown. An engine's own error answer is final, and a
// removal is never asked for twice.
func TestLostAnswerIsSettled(t *testing.T) {
	tests := []struct {
		name        string
		world       func(f *fakeDocker)
		ctx         func() (context.Context, context.CancelFunc)
		want        pipeline.OutcomeStatus
		wantErr     string
		wantRemoves int
		stillExists bool
	}{
		{
			name:        "deadline after the engine removed it",
			world:       func(f *fakeDocker) { f.LostAnswer["x1"] = context.DeadlineExceeded },
			want:        pipeline.OutcomeRemoved,
			wantRemoves: 1,
		},
		{
			name:        "dropped connection after the engine removed it",
			world:       func(f *fakeDocker) { f.LostAnswer["x1"] = errDropped },
			want:        pipeline.OutcomeRemoved,
			wantRemoves: 1,
		},
		{
			name:        "request never arrived: still there",
			world:       func(f *fakeDocker) { f.RemoveErr["x1"] = errDropped },
			want:        pipeline.OutcomeFailed,
			wantErr:     "remove: " + errDropped.Error() + "; the container is still there",
			wantRemoves: 1,
			stillExists: true,
		},
		{
			name: "request queued in a stalled engine: done after a look",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = context.DeadlineExceeded
				looks := 0
				f.AfterInspect = func(id string) {
					if looks++; looks == 2 { // the re-inspect before, then one look
						f.Delete(id)
					}
				}
			},
			want:        pipeline.OutcomeRemoved,
			wantRemoves: 1,
		},
		{
			name: "removal still in progress: looked at until done",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = context.DeadlineExceeded
				removing := false
				f.AfterRemove = func(id string) {
					f.Set(id, func(c *container.InspectResponse) { c.State.Status = container.StateRemoving })
					removing = true
				}
				f.AfterInspect = func(id string) { // seen removing once, then done
					if removing {
						f.Delete(id)
					}
				}
			},
			want:        pipeline.OutcomeRemoved,
			wantRemoves: 1,
		},
		{
			name: "started again meanwhile: changed",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = context.DeadlineExceeded
				f.AfterRemove = func(id string) {
					f.Set(id, func(c *container.InspectResponse) { c.State.Status = container.StateRunning })
				}
			},
			want:        pipeline.OutcomeChanged,
			wantErr:     "state exited -> running",
			wantRemoves: 1,
			stillExists: true,
		},
		{
			name: "engine never answers again",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = context.DeadlineExceeded
				f.AfterRemove = func(id string) {
					f.FailInspect(id, context.DeadlineExceeded)
				}
			},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			want:        pipeline.OutcomeFailed,
			wantErr:     "remove: context deadline exceeded; whether the engine removed the container is unknown (it did not answer again: context deadline exceeded; the next run looks again)",
			wantRemoves: 1,
			stillExists: true,
		},
		{
			name: "the run's deadline cut the call: one more look",
			world: func(f *fakeDocker) {
				f.LostAnswer["x1"] = context.DeadlineExceeded
			},
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				return ctx, cancel
			},
			want:        pipeline.OutcomeRemoved,
			wantRemoves: 1,
		},
		{
			name: "the engine's own error is final",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = cerrdefs.ErrInternal.WithMessage("driver failed to remove root filesystem")
			},
			want:        pipeline.OutcomeFailed,
			wantErr:     "remove: driver failed to remove root filesystem",
			wantRemoves: 1,
			stillExists: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := exited("x1", "proj-x", map[string]string{"ds01.user": "alice"})
			f := newFake(c)
			rec := target(c)
			tt.world(f)
			ctx, cancel := context.WithCancel(t.Context())
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			if tt.name == "the run's deadline cut the call: one more look" {
				f.AfterRemove = func(string) { cancel() } // the run ends during the call
			}
			env := testEnv(f, pipeline.ModeRun)
			b := &pipeline.Batch{Records: []*pipeline.Record{rec}}
			_ = (&Remove{Workers: 1, settleWait: time.Millisecond}).Process(ctx, env, b)

			wantOutcome(t, rec, outcome(tt.want, tt.wantErr))
			if got := f.Count("remove "); got != tt.wantRemoves {
				t.Errorf("%d ContainerRemove calls, want %d: %v", got, tt.wantRemoves, f.Calls())
			}
			if f.Has("x1") != tt.stillExists {
				t.Errorf("container exists afterwards: %v, want %v", f.Has("x1"), tt.stillExists)
			}
			evs := b.TakeEvents()
			if want := b2i(tt.want == pipeline.OutcomeRemoved); len(evs) != want || (want == 1 && evs[0].Type != events.ContainerRemove) {
				t.Errorf("events %v, want %d container.remove", evs, want)
			}
		})
	}
}
