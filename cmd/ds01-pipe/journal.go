package main

import (
	"strconv"

	"github.com/sirupsen/logrus"
)

// journalFormatter prefixes each log line with its syslog priority in the
// form journald reads on a service's stream (sd-daemon(3): "<4>" for a
// warning), so `journalctl -p warning` and the journal's colours match the
// level. journald strips the prefix; every line of a multi-line entry
// gets one.
type journalFormatter struct {
	logrus.Formatter
}

// journalPriority maps a logrus level to a syslog priority.
func journalPriority(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return 2 // crit
	case logrus.ErrorLevel:
		return 3 // err
	case logrus.WarnLevel:
		return 4 // warning
	case logrus.InfoLevel:
		return 6 // info
	default:
		return 7 // debug
	}
}

// Format formats the entry with the wrapped formatter, then prefixes every
// line.
func (f journalFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.Formatter.Format(e)
	if err != nil {
		return nil, err
	}
	return prefixLines(b, journalPriority(e.Level)), nil
}

// prefixLines puts "<prio>" before each line of b.
func prefixLines(b []byte, prio int) []byte {
	p := "<" + strconv.Itoa(prio) + ">"
	out := make([]byte, 0, len(b)+len(p))
	start := true
	for _, c := range b {
		if start {
			out = append(out, p...)
		}
		out = append(out, c)
		start = c == '\n'
	}
	return out
}
