// Package attribute implements the "attribute" stage: it finds the owner of
// every container by DS01's owner fallback chain and records which rule
// found it.
package attribute

import (
	"context"
	_ "embed" // the sample stage block
	"os/user"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "attribute"

//go:embed sample.hcl
var sample string

// Owner labels, in the order the chain reads them. The OwnerSource values
// are these keys, so one definition serves both.
const (
	labelUser   = string(pipeline.OwnerFromUser)
	labelAIME   = string(pipeline.OwnerFromAIME)
	labelFolder = string(pipeline.OwnerFromDevcontainer)
)

const (
	homePrefix = "/home/"
	// uidMarker marks DS01 "atomic" container names: <project>._.<uid>.
	uidMarker = "._."
	// maxOwnerLen bounds an owner name. Real login names are far shorter;
	// anything longer is garbage or an attack on whatever stores it.
	maxOwnerLen = 256
)

// Attribute is the attribute stage.
type Attribute struct {
	PasswdLookup bool `hcl:"passwd_lookup,optional" doc:"Resolve the uid token of <name>._.<uid> container names through the passwd database (rule 4). Turn it off on hosts where NSS (LDAP, SSSD) is slow or unreachable; such containers then get the owner \"unknown\"."`

	// Lookup resolves a passwd token (a numeric uid or a login name) to a
	// login name. New sets it to LookupPasswd; tests inject a fake.
	Lookup func(token string) (string, bool)
}

// New returns an attribute stage with its defaults.
func New() *Attribute {
	return &Attribute{PasswdLookup: true, Lookup: LookupPasswd}
}

// Process sets Owner on every record.
func (a *Attribute) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	var lookup func(string) (string, bool)
	var lookupErr error
	if a.PasswdLookup && a.Lookup != nil {
		// One run sees the same uid on many containers of one user, and an
		// NSS round trip (LDAP, SSSD) can take a while: ask once per token.
		type entry struct {
			name string
			ok   bool
		}
		cache := make(map[string]entry)
		lookup = func(token string) (string, bool) {
			if e, hit := cache[token]; hit {
				return e.name, e.ok
			}
			name, ok, err := lookupCtx(ctx, a.Lookup, token)
			if err != nil {
				lookupErr = err
				return "", false
			}
			cache[token] = entry{name, ok}
			return name, ok
		}
	}

	unknown := 0
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec.Owner = owner(&rec.Container, lookup, rec.Warn)
		if lookupErr != nil {
			return lookupErr
		}
		if !rec.Owner.Known() {
			unknown++
		}
	}
	if env != nil && env.Log != nil {
		env.Log.WithField("containers", len(batch.Records)).WithField("unknown_owner", unknown).Debug("owners attributed")
	}
	return nil
}

// lookupCtx runs one passwd lookup without letting it outlive ctx: os/user
// cannot be cancelled, and a hung NSS backend must not hold the run past
// its deadline. An abandoned lookup finishes in the background.
func lookupCtx(ctx context.Context, fn func(string) (string, bool), token string) (string, bool, error) {
	type result struct {
		name string
		ok   bool
	}
	done := make(chan result, 1) // buffered: an abandoned lookup must not block forever
	go func() {
		name, ok := fn(token)
		done <- result{name, ok}
	}()
	select {
	case r := <-done:
		return r.name, r.ok, nil
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
}

// Owner returns the owner of a container by DS01's fallback chain:
//
//  1. label ds01.user;
//  2. label aime.mlc.USER;
//  3. label devcontainer.local_folder starting with "/home/": the path
//     component right after it;
//  4. a name containing "._.": the text after the last "." of the name,
//     resolved by lookupUID (nil disables this rule);
//  5. otherwise "unknown".
//
// As in DS01, the first rule that matches decides, even when what it yields
// is empty or does not resolve: the owner is then "unknown". A value that
// is not usable as a name (control characters, invalid UTF-8, a path
// separator, "." or "..", or over 256 bytes) also yields "unknown".
// Labels that are empty or "<no value>" count as absent.
func Owner(c *pipeline.Container, lookupUID func(token string) (string, bool)) pipeline.Owner {
	return owner(c, lookupUID, nil)
}

// owner is Owner reporting unusable values through warn (nil: silently).
func owner(c *pipeline.Container, lookupUID func(string) (string, bool), warn func(string)) pipeline.Owner {
	if v, ok := c.Label(labelUser); ok {
		return checked(v, pipeline.OwnerFromUser, warn)
	}
	if v, ok := c.Label(labelAIME); ok {
		return checked(v, pipeline.OwnerFromAIME, warn)
	}
	if v, ok := c.Label(labelFolder); ok {
		if rest, found := strings.CutPrefix(v, homePrefix); found {
			name, _, _ := strings.Cut(rest, "/")
			return checked(name, pipeline.OwnerFromDevcontainer, warn)
		}
		// Not a Linux home (macOS /Users/..., Windows paths): fall through.
	}
	if strings.Contains(c.Name, uidMarker) {
		if lookupUID == nil {
			return unknown()
		}
		// DS01 takes the text after the last "." of the whole name, not of
		// the marker: "x._.1001.bak" yields "bak", which getent may resolve
		// as a login name.
		token := c.Name[strings.LastIndexByte(c.Name, '.')+1:]
		if token == "" {
			return unknown()
		}
		name, ok := lookupUID(token)
		if !ok {
			return unknown()
		}
		return checked(name, pipeline.OwnerFromNameUID, warn)
	}
	return unknown()
}

func unknown() pipeline.Owner {
	return pipeline.Owner{Name: pipeline.UnknownOwner, Source: pipeline.OwnerUnknown}
}

// checked returns the owner found by a rule, or "unknown" when the value
// is empty (DS01's "empty means unknown") or unusable. Owner names end up in
// log lines, reports and policy lookups, so a hostile label value must not
// travel further than this stage; the warning names where it came from,
// never the value itself.
func checked(name string, src pipeline.OwnerSource, warn func(string)) pipeline.Owner {
	if name == "" {
		return unknown()
	}
	if !usableName(name) {
		if warn != nil {
			warn("attribute: the owner from " + string(src) + " is not a usable user name (control characters, invalid UTF-8, a path separator or over 256 bytes); owner set to unknown")
		}
		return unknown()
	}
	return pipeline.Owner{Name: name, Source: src}
}

// usableName reports whether s can be used verbatim as an owner name.
// No login name contains "/" or is "." or "..": rejecting them keeps an
// owner from ever naming a path outside where it is used as a file name.
func usableName(s string) bool {
	if len(s) > maxOwnerLen || !utf8.ValidString(s) || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// LookupPasswd resolves a token like `getent passwd TOKEN` does: an all-digit
// token is a uid, anything else a login name. It returns the login name.
// How far it reaches (files only, or NSS with LDAP/SSSD) depends on how the
// binary was built: the cgo os/user asks NSS, the pure-Go one reads
// /etc/passwd.
func LookupPasswd(token string) (string, bool) {
	var (
		u   *user.User
		err error
	)
	if isDigits(token) {
		// getent parses the uid as a number, so "01001" is uid 1001.
		uid, perr := strconv.ParseUint(token, 10, 32)
		if perr != nil {
			return "", false
		}
		u, err = user.LookupId(strconv.FormatUint(uid, 10))
	} else {
		u, err = user.Lookup(token)
	}
	if err != nil || u.Username == "" {
		return "", false
	}
	return u.Username, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Finds the owner of every container by the DS01 chain: label ds01.user, label aime.mlc.USER, label devcontainer.local_folder under /home/<user>/, a <name>._.<uid> name resolved through the passwd database, else \"unknown\". Records which rule matched (owner_source). Unusable values (control characters, invalid UTF-8, a path separator, over 256 bytes) become \"unknown\" with a warning.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Writes: []pipeline.Field{pipeline.FieldOwner},
		},
	})
}
