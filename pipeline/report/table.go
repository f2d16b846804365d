package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// Column widths keep a plan table within 120 columns.
const (
	nameWidth  = 32
	ownerWidth = 16
	typeWidth  = 12
)

// WriteTable writes the containers (and GPUs, when the run reconciled any)
// as aligned text for a terminal.
func (d *Document) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CONTAINER\tOWNER\tTYPE\tSTATE\tAGE\tLIMIT\tVERDICT\tREASON\tOUTCOME\n")
	for _, c := range d.Containers {
		owner := c.Owner
		if c.OwnerSource != "" && c.OwnerSource != "unknown" && c.OwnerSource != "ds01.user" {
			owner += "*" // found by a fallback rule; the JSON says which
		}
		outcome := c.Outcome
		if c.Error != "" {
			outcome += ": " + c.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(c.Name, nameWidth), cell(owner, ownerWidth), cell(c.Type, typeWidth), cell(c.State, 10),
			ageCell(c.AgeS), limitCell(c), cell(c.Verdict, 7), cell(reasonCell(c), 24), cell(outcome, 40))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.GPUs) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "GPU\tINDEX\tSTATUS\tCLAIMED BY\tPROCESSES\n")
		for _, g := range d.GPUs {
			idx := fmt.Sprint(g.Index)
			if g.MIGParent != nil {
				idx = "  mig " + idx
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(g.UUID, 44), idx, g.Status,
				cell(strings.Join(shortIDs(g.ClaimedBy), ","), 30), cell(processCell(g.Processes), 40))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	s := d.Summary
	fmt.Fprintf(w, "\n%s (%s): %d containers, %d to remove, %d removed, %d failed; NVML: %s\n",
		cell(d.Pipeline, 40), d.Mode, s.Containers, s.Remove, s.Removed, s.Failed, s.NVML)
	return nil
}

func reasonCell(c Container) string {
	if c.Exempt && c.ExemptReason != "" {
		return "exempt (" + c.ExemptReason + ")"
	}
	return c.Reason
}

func limitCell(c Container) string {
	switch {
	case c.LimitS != nil:
		return Duration(time.Duration(*c.LimitS) * time.Second)
	case c.Reason == "indefinite_hold":
		return "never"
	}
	return "-"
}

func ageCell(s *int64) string {
	if s == nil {
		return "-"
	}
	return Duration(time.Duration(*s) * time.Second)
}

func processCell(ps []Process) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		owner := "host"
		if p.ContainerID != nil {
			owner = shortID(*p.ContainerID)
		}
		parts = append(parts, fmt.Sprintf("%d(%s)", p.PID, owner))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = shortID(id)
	}
	return out
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Duration formats a duration compactly for humans: 45s, 12m, 3h05m, 2d4h.
func Duration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

// cell makes untrusted text safe for one table cell: control characters
// (newlines, ANSI escapes) and invalid UTF-8 are replaced, and long text is
// cut with an ellipsis.
func cell(s string, width int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			r = '?'
		}
		if unicode.IsControl(r) || r == '\t' {
			r = '?'
		}
		if n == width-1 && i < len(s) {
			b.WriteRune('…')
			return b.String()
		}
		b.WriteRune(r)
		n++
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}
