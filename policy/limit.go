package policy

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limit is one duration setting.
type Limit struct {
	// Duration may be 0 or negative: both mean "act at the next run".
	Duration time.Duration
	// Unlimited is set for null and for the words null, none, never, indefinite
	// and the empty string (case-insensitive, trimmed). Duration is 0 then.
	Unlimited bool
	// Source says where the value came from, for a verdict's "rule", for example
	// "groups.researcher.container_hold_after_stop_h" or "built-in default".
	Source string
}

// String renders the limit as "never" or as a compact Go duration
// ("30m", "1h30m", "-1h", "0s").
func (l Limit) String() string {
	if l.Unlimited {
		return "never"
	}
	s := l.Duration.String()
	// time.Duration prints "1h0m0s"; drop the zero tails an admin would not write.
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// unitOf returns the unit a key's suffix implies: _h hours, _m minutes, _s seconds.
func unitOf(key string) (time.Duration, bool) {
	switch {
	case strings.HasSuffix(key, "_h"):
		return time.Hour, true
	case strings.HasSuffix(key, "_m"):
		return time.Minute, true
	case strings.HasSuffix(key, "_s"):
		return time.Second, true
	}
	return 0, false
}

// isDurationKey reports whether key names a duration, by DS01's suffix convention.
func isDurationKey(key string) bool {
	_, ok := unitOf(key)
	return ok
}

// isNoLimitWord reports whether text is one of DS01's spellings of "no limit".
func isNoLimitWord(text string) bool {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "", "null", "none", "never", "indefinite":
		return true
	}
	return false
}

// ParseLimitText reads a limit written as text, as a pipeline attribute
// writes it: one of DS01's no-limit words (null, none, never, indefinite;
// any case) is Unlimited, anything else must be a Go duration ("45m",
// "1h30m"; negative means "at the next run"). ok is false for an empty
// text: no limit was written. The returned Limit has no Source.
func ParseLimitText(text string) (l Limit, ok bool, err error) {
	t := strings.TrimSpace(text)
	switch {
	case t == "":
		return Limit{}, false, nil
	case isNoLimitWord(t):
		return Limit{Unlimited: true}, true, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return Limit{}, false, fmt.Errorf("%q is neither a duration such as \"45m\" or \"1h30m\" nor \"never\"", text)
	}
	return Limit{Duration: d}, true, nil
}

// decimalNumber matches the plain decimal numbers accepted inside quoted
// strings and used for exact arithmetic on YAML floats. The exponent is capped
// at three digits so a hostile file cannot make big.Rat build a huge power of ten.
var decimalNumber = regexp.MustCompile(`^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?$`)

// maxSeconds is the largest whole number of seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// ParseDuration converts one YAML scalar to a Limit, in the unit that key's
// suffix implies (_h, _m or _s). It accepts:
//
//   - integers and floats, truncated toward zero to whole seconds
//     (0.25 with an _h key is 15m); negative values give a negative
//     Duration, which means "act at the next run", never "no limit";
//   - null, and the strings null, none, never, indefinite and "" (any case,
//     surrounding space ignored), which give Unlimited;
//   - a quoted plain decimal number such as "0.5", read like the bare number,
//     because DS01 handed every value to its parser as text.
//
// Anything else ("24h", "abc", true, a date, a list, a mapping, .inf) is an
// error. DS01 silently read such values as 0, which removes containers at the
// next run; an error stops the run before anything is touched instead.
// A nil node counts as null. The returned Limit has no Source.
func ParseDuration(n *yaml.Node, key string) (Limit, error) {
	unit, ok := unitOf(key)
	if !ok {
		return Limit{}, fmt.Errorf("key %q has no unit suffix (_h, _m or _s)", key)
	}
	n = deref(n)
	if isNull(n) {
		return Limit{Unlimited: true}, nil
	}
	if n.Kind != yaml.ScalarNode {
		return Limit{}, fmt.Errorf("want a number or null, got %s", describe(n))
	}
	r, err := scalarNumber(n)
	if err != nil {
		return Limit{}, err
	}
	if r == nil {
		return Limit{Unlimited: true}, nil
	}
	secs := new(big.Rat).Mul(r, new(big.Rat).SetInt64(int64(unit/time.Second)))
	// big.Int.Quo truncates toward zero, as DS01's int(float(x) * unit) did.
	whole := new(big.Int).Quo(secs.Num(), secs.Denom())
	if !whole.IsInt64() || whole.Int64() > maxSeconds || whole.Int64() < -maxSeconds {
		return Limit{}, fmt.Errorf("%s is out of range for a duration", quoteValue(n))
	}
	return Limit{Duration: time.Duration(whole.Int64()) * time.Second}, nil
}

// scalarNumber reads a scalar as an exact number. It returns nil, nil for the
// "no limit" words.
func scalarNumber(n *yaml.Node) (*big.Rat, error) {
	bad := func() error {
		return fmt.Errorf("cannot use %s as a duration: want a number, null, or one of never, none, indefinite", quoteValue(n))
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return nil, bad() // e.g. !!int on text that is not a number
		}
		return new(big.Rat).SetInt64(v), nil
	case "!!float":
		if decimalNumber.MatchString(n.Value) {
			if r, ok := new(big.Rat).SetString(n.Value); ok {
				return r, nil
			}
		}
		// Other YAML spellings (.inf, .nan, 1e9999): decode, then reject the
		// values no duration can hold.
		var f float64
		if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, bad()
		}
		return new(big.Rat).SetFloat64(f), nil
	case "!!str":
		if isNoLimitWord(n.Value) {
			return nil, nil
		}
		text := strings.TrimSpace(n.Value)
		if decimalNumber.MatchString(text) {
			if r, ok := new(big.Rat).SetString(text); ok {
				return r, nil
			}
		}
		return nil, bad()
	}
	return nil, bad()
}

// quoteValue renders a scalar for an error message.
func quoteValue(n *yaml.Node) string {
	const max = 40
	v := n.Value
	if len(v) > max {
		v = v[:max] + "..."
	}
	return fmt.Sprintf("%q", v)
}
