package lifecycle

import (
	"fmt"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/state"
	"github.com/ds01/ds01-pipe/policy"
)

// signals judges the run's evidence against the owner's thresholds. GPU
// comes from measure's NVML reading; CPU and network are the difference
// between this run's Docker stats sample and the previous run's, over the
// real time between the two (Docker's own sample times: --now moves policy
// clocks, never rates). Without a previous sample, or when a counter went
// backwards, there is no evidence this run.
func signals(lc *pipeline.Lifecycle, ip policy.IdlePolicy, prev *state.Sample) []pipeline.Signal {
	gpu := lc.GPU
	gpu.Name = pipeline.SignalGPU
	gpu.Threshold = ip.GPUThreshold.Value
	// DS01: idle only when utilisation < threshold (strict).
	gpu.Active = gpu.Known && gpu.Value >= gpu.Threshold

	cpu := pipeline.Signal{Name: pipeline.SignalCPU, Source: pipeline.SourceDockerStats, Threshold: ip.CPUThreshold.Value}
	net := pipeline.Signal{Name: pipeline.SignalNetwork, Source: pipeline.SourceDockerStats, Threshold: ip.NetworkThreshold.Value}
	cur := lc.Stats
	switch {
	case cur == nil:
		why := lc.StatsError
		if why == "" {
			why = "not measured"
		}
		cpu.Missing, net.Missing = why, why
	case prev == nil:
		cpu.Missing = "first sample of this container run: no previous one to compare"
		net.Missing = cpu.Missing
	case !cur.Read.After(prev.Read):
		cpu.Missing = fmt.Sprintf("sample time %s is not after the previous one (%s)", stamp(cur.Read), stamp(prev.Read))
		net.Missing = cpu.Missing
	default:
		elapsed := cur.Read.Sub(prev.Read)
		if cur.CPUTotalNs < prev.CPUTotalNs {
			cpu.Missing = "CPU counter went backwards: starting fresh"
		} else {
			// Percent of one CPU, as docker stats shows it.
			cpu.Value = float64(cur.CPUTotalNs-prev.CPUTotalNs) / float64(elapsed.Nanoseconds()) * 100
			cpu.Known = true
			cpu.Active = cpu.Value > cpu.Threshold
		}
		if cur.RxBytes < prev.RxBytes {
			net.Missing = "network counter went backwards: starting fresh"
		} else {
			net.Value = float64(cur.RxBytes - prev.RxBytes)
			net.Known = true
			net.Active = net.Value > net.Threshold
		}
	}
	return []pipeline.Signal{gpu, cpu, net}
}

// evidence sums up the signals: any active one makes the container active
// (DS01's AND logic for idleness); idle needs every signal known.
func evidence(sigs []pipeline.Signal) (active, allKnown bool, missing string) {
	allKnown = true
	var why []string
	for _, s := range sigs {
		if s.Active {
			active = true
		}
		if !s.Known {
			allKnown = false
			why = append(why, s.Name+": "+s.Missing)
		}
	}
	return active, allKnown, strings.Join(why, "; ")
}

func activeDetail(sigs []pipeline.Signal) string {
	var parts []string
	for _, s := range sigs {
		if !s.Active {
			continue
		}
		switch s.Name {
		case pipeline.SignalNetwork:
			parts = append(parts, fmt.Sprintf("network %.0f bytes received > %.0f", s.Value, s.Threshold))
		case pipeline.SignalGPU:
			parts = append(parts, fmt.Sprintf("gpu %.0f%% >= %g%%", s.Value, s.Threshold))
		default:
			parts = append(parts, fmt.Sprintf("%s %.1f%% > %g%%", s.Name, s.Value, s.Threshold))
		}
	}
	return "active: " + strings.Join(parts, ", ")
}
