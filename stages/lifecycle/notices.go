package lifecycle

import (
	"fmt"
	"time"

	textsafe "github.com/ds01/ds01-pipe/internal/printable"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/policy"
)

// DS01's notice severities and titles (reference 9.4).
const (
	sevWarning = "WARNING"
	sevStopped = "STOPPED"
	sevNotice  = "NOTICE"
)

var titles = map[pipeline.NoticeKind]struct{ severity, title string }{
	pipeline.NoticeIdleWarning:         {sevWarning, "IDLE CONTAINER WARNING"},
	pipeline.NoticeIdleFinalWarning:    {sevWarning, "FINAL IDLE WARNING — STOPPING SOON"},
	pipeline.NoticeIdleStop:            {sevStopped, "CONTAINER AUTO-STOPPED"},
	pipeline.NoticeIdleExempt:          {sevNotice, "IDLE CONTAINER NOTICE (FYI only — you are exempt)"},
	pipeline.NoticeRuntimeWarning:      {sevWarning, "MAX RUNTIME WARNING"},
	pipeline.NoticeRuntimeFinalWarning: {sevWarning, "FINAL RUNTIME WARNING — STOPPING SOON"},
	pipeline.NoticeRuntimeStop:         {sevStopped, "CONTAINER STOPPED — RUNTIME LIMIT"},
}

// noticeFor writes one notice for the owner.
func noticeFor(k pipeline.NoticeKind, rec *pipeline.Record, lc *pipeline.Lifecycle, idle, runtime policy.Limit, d demand) pipeline.Notice {
	t := titles[k]
	// Names and owners come from labels anyone can set, and notices go to
	// terminals: nothing in them may act as a control sequence.
	name := printable(rec.Container.Name)
	n := pipeline.Notice{Kind: k, Severity: t.severity, Title: t.title}
	hd := ""
	if d.On {
		hd = "\nHIGH DEMAND MODE: idle timeouts are shortened while most GPUs are allocated."
	}
	switch k {
	case pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning:
		n.Body = fmt.Sprintf("Your container %s has been idle for %s (idle limit %s). It will be stopped and removed "+
			"in about %s unless it becomes active. Save your work; files in mounted folders are kept. To keep it, "+
			"use the GPU, or touch /workspace/.keep-alive.%s", name, human(lc.Idle), human(idle.Duration), left(idle.Duration, lc.Idle), hd)
	case pipeline.NoticeIdleStop:
		n.Body = fmt.Sprintf("Your container %s was idle for %s (idle limit %s) and is being stopped and removed to free its GPU.%s",
			name, human(lc.Idle), human(idle.Duration), hd)
	case pipeline.NoticeIdleExempt:
		n.Body = fmt.Sprintf("Your container %s has been idle for %s. You are exempt from idle stops, so nothing "+
			"will happen; please stop it yourself when you no longer need its GPU.", name, human(lc.Idle))
	case pipeline.NoticeRuntimeWarning, pipeline.NoticeRuntimeFinalWarning:
		n.Body = fmt.Sprintf("Your container %s has been running for %s (runtime limit %s). It will be stopped in "+
			"about %s. Save your work and checkpoint long jobs.", name, human(lc.Runtime), human(runtime.Duration), left(runtime.Duration, lc.Runtime))
	case pipeline.NoticeRuntimeStop:
		n.Body = fmt.Sprintf("Your container %s has run for %s, over its runtime limit of %s, and is being stopped. "+
			"It is not removed: restart it, or it is removed after the usual hold.", name, human(lc.Runtime), human(runtime.Duration))
	}
	return n
}

// printable escapes what is not a graphic character, as Go's %q would.
func printable(s string) string { return textsafe.Escape(s) }

// left is the time to the limit, at least a minute: the owner is told
// "about 1m", never a negative number (DS01 printed those).
func left(limit, elapsed time.Duration) string {
	return human(max(limit-elapsed, time.Minute))
}
