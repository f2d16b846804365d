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

// Column widths keep a plan table within 120 columns; the JSON has every
// value in full.
const (
	nameWidth   = 24
	ownerWidth  = 12
	typeWidth   = 10
	reasonWidth = 20
	errorWidth  = 100
)

// WriteTable writes the containers (and GPUs, when the run reconciled any)
// as aligned text for a terminal of 120 columns.
func (d *Document) WriteTable(w io.Writer) error { return d.WriteTableWidth(w, defaultTableWidth) }

// defaultTableWidth is the width the column widths above were chosen for.
const defaultTableWidth = 120

// uncut is a width no cell reaches.
const uncut = 1 << 30

// tableWidths are the widths the cells are cut to.
type tableWidths struct {
	name, owner, typ, reason, problem  int
	uuid, holders, processes, pipeline int
}

// widthsFor fits the table in a terminal of the given width: the container
// name takes what it has beyond 120 columns, and gives up to
// nameWidth-minNameWidth columns when it is narrower. Width 0
// (the output is not a terminal: a file, a pipe, a pager) cuts nothing, so
// every name comes out whole.
func widthsFor(width int) tableWidths {
	if width <= 0 {
		return tableWidths{uncut, uncut, uncut, uncut, uncut, uncut, uncut, uncut, uncut}
	}
	// What the terminal has beyond (or lacks below) the default width goes
	// to (or comes from) the container name first.
	extra := width - defaultTableWidth
	if extra < 0 {
		return tableWidths{
			name: max(minNameWidth, nameWidth+extra), owner: ownerWidth, typ: typeWidth, reason: reasonWidth,
			problem: max(minNameWidth, width-1), uuid: 40, holders: 28, processes: 26, pipeline: 40,
		}
	}
	return tableWidths{
		name: nameWidth + extra, owner: ownerWidth, typ: typeWidth, reason: reasonWidth,
		problem: errorWidth + extra, uuid: 40, holders: 28 + extra/2, processes: 26 + extra/2, pipeline: 40,
	}
}

// minNameWidth is the narrowest a container name is cut to.
const minNameWidth = 12

// WriteTableWidth is WriteTable for a terminal of width columns, or, with
// width 0, for output that is not a terminal: nothing is cut.
func (d *Document) WriteTableWidth(w io.Writer, width int) error {
	cw := widthsFor(width)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CONTAINER\tOWNER\tTYPE\tSTATE\tAGE\tLIMIT\tVERDICT\tREASON\tOUTCOME\n")
	var problems []string
	for _, c := range d.Containers {
		owner := c.Owner
		if c.OwnerSource != "" && c.OwnerSource != "unknown" && c.OwnerSource != "ds01.user" {
			owner += "*" // found by a fallback rule; the JSON says which
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(c.Name, cw.name), cell(owner, cw.owner), cell(c.Type, cw.typ), cell(c.State, 10),
			ageCell(c.AgeS), limitCell(c), cell(c.Verdict, 7), cell(c.Reason, cw.reason), cell(c.Outcome, 8))
		if c.Error != "" {
			problems = append(problems, cell(c.Name+": "+c.Outcome+": "+c.Error, cw.problem))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(problems) > 0 {
		fmt.Fprintln(w)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
	}
	if len(d.GPUs) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "GPU\tINDEX\tSTATUS\tCLAIMED BY\tPROCESSES\n")
		names := d.containerNames()
		for _, g := range d.GPUs {
			idx := fmt.Sprint(g.Index)
			if g.MIGParent != nil {
				idx = "mig " + idx
			}
			holders := make([]string, 0, len(g.ClaimedBy))
			for _, id := range g.ClaimedBy {
				holders = append(holders, names.of(id))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(g.UUID, cw.uuid), cell(idx, 6), cell(g.Status, 12),
				cell(strings.Join(holders, ","), cw.holders), cell(processCell(g.Processes, names), cw.processes))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	s := d.Summary
	fmt.Fprintf(w, "\n%s (%s): %d containers, %d to remove, %d removed, %d failed; NVML: %s\n",
		cell(d.Pipeline, cw.pipeline), d.Mode, s.Containers, s.Remove, s.Removed, s.Failed, s.NVML)
	return nil
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

// holderNames maps container IDs to "owner/name" for the GPU table, so it
// answers "who holds which GPU" without a second lookup.
type holderNames map[string]string

func (d *Document) containerNames() holderNames {
	m := make(holderNames, len(d.Containers))
	for _, c := range d.Containers {
		m[c.ID] = c.Owner + "/" + c.Name
	}
	return m
}

func (h holderNames) of(id string) string {
	if n, ok := h[id]; ok {
		return n
	}
	return shortID(id) // a container outside the pipeline's scope
}

func processCell(ps []Process, names holderNames) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		owner := "no container"
		if p.ContainerID != nil {
			owner = names.of(*p.ContainerID)
		}
		parts = append(parts, fmt.Sprintf("%d(%s)", p.PID, owner))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
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
		// Control and format characters (ESC, line separators, right-to-left
		// overrides, zero-width marks) could make a row read differently.
		if !unicode.IsGraphic(r) || unicode.Is(unicode.Cf, r) {
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
