// Package state is the lifecycle pipeline's memory between runs: an
// embedded, crash-safe store (bbolt) under the pipeline's state_dir.
//
// One entry per container run, keyed by the container's ID and its
// StartedAt, never by name: a restart, or a new container that reuses a
// name, starts fresh (DS01 kept state by name and leaked warnings to the
// next container of that name). The store also keeps the instants the
// last runs used (their --now clock and the wall clock), so that a run
// knows how long ago the previous one was, and the previous Docker stats
// sample of each container, so that CPU and network are measured as the
// difference over the real time between two runs.
//
// A run reads everything once and writes everything once, in one
// transaction: Save writes the entries the caller passes and drops
// (prunes) every other. The caller decides what to keep: the lifecycle
// stage keeps the entries of containers outside its run's scope until the
// engine confirms their container run is over, so that pipelines with
// different scopes can share a state_dir. An entry may thus outlive its
// container until the next run that asks the engine about it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// SchemaVersion is the layout of the store this package reads and writes.
// A store written by a newer layout is refused, never guessed at.
const SchemaVersion = 1

// FileName is the store's file inside state_dir.
const FileName = "lifecycle.db"

// MaxRuns is how many past runs the store remembers.
const MaxRuns = 48

// lockTimeout bounds the wait for the store's file lock (a run holds it
// exclusively while it writes; plan and `ds01-pipe state` share it).
const lockTimeout = 10 * time.Second

var (
	bucketMeta       = []byte("meta")
	bucketContainers = []byte("containers")
	keySchema        = []byte("schema_version")
	keyRuns          = []byte("runs")
)

// Key names one run of one container.
type Key struct {
	ID        string
	StartedAt time.Time
}

// String is the key as stored: "<id>@<StartedAt, RFC 3339 with nanoseconds>".
func (k Key) String() string {
	return k.ID + "@" + k.StartedAt.UTC().Format(time.RFC3339Nano)
}

// Entry is what the lifecycle remembers about one container run. Instants
// are on the policy clock (the run's --now, or the wall clock) except in
// Sample, whose instant is Docker's own sample time: rates are measured
// over real time, never over a clock moved by --now.
type Entry struct {
	ContainerID string    `json:"container_id"`
	Name        string    `json:"name"`
	StartedAt   time.Time `json:"started_at"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`

	// LastActivity is the last run that saw the container active, or the
	// first run that saw it at all: idle time is measured from it.
	LastActivity time.Time `json:"last_activity"`
	IdleStreak   int       `json:"idle_streak"`

	// The instants each notice was decided (zero: not yet). Each is given
	// once per container run.
	IdleWarned         time.Time `json:"idle_warned,omitzero"`
	IdleFinalWarned    time.Time `json:"idle_final_warned,omitzero"`
	IdleExemptNoticed  time.Time `json:"idle_exempt_noticed,omitzero"`
	RuntimeWarned      time.Time `json:"runtime_warned,omitzero"`
	RuntimeFinalWarned time.Time `json:"runtime_final_warned,omitzero"`
	RuntimeExemptAt    time.Time `json:"runtime_exempt_logged,omitzero"`

	Sample *Sample `json:"sample,omitempty"`
}

// Sample is one Docker stats reading: cumulative counters and Docker's
// time of reading.
type Sample struct {
	Read       time.Time `json:"read"`
	CPUTotalNs uint64    `json:"cpu_total_ns"`
	RxBytes    uint64    `json:"rx_bytes"`
}

// Run is one run as the store remembers it.
type Run struct {
	Now        time.Time `json:"now"`  // the policy clock the run used
	Wall       time.Time `json:"wall"` // the wall clock when it saved
	Pipeline   string    `json:"pipeline"`
	HighDemand bool      `json:"high_demand"`
}

// Contents is everything the store holds.
type Contents struct {
	SchemaVersion int
	Runs          []Run            // oldest first
	Entries       map[string]Entry // by Key.String()
}

// LastRun returns the most recent run, if any.
func (c *Contents) LastRun() (Run, bool) {
	if len(c.Runs) == 0 {
		return Run{}, false
	}
	return c.Runs[len(c.Runs)-1], true
}

// Path returns the store's file in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// CheckDir checks that dir can hold the store safely: when it exists it
// must be a directory owned by root or by the user running ds01-pipe that
// no one else can write, because whoever can replace the
// store can decide which warnings count as given. A missing dir is fine:
// the first run creates it, mode 0700.
func CheckDir(dir string) error {
	if dir == "" {
		return errors.New("state_dir is empty")
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q must be an absolute path", dir)
	}
	if os.Geteuid() == 0 {
		// As root, every folder and link above it must be root's too: a
		// user who owns a folder above the store could swap it for a
		// fresh one between runs (idle streaks and warnings start over,
		// and an idle container is never stopped) or point the path at a
		// folder of their choice.
		if _, err := safefile.Check(filepath.Dir(dir), safefile.Trust{Enforce: true}); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	// root's, or the user's running ds01-pipe (tests, validate as a user).
	if uid, ok := ownerOf(fi); ok && uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by root or uid %d which runs ds01-pipe", dir, uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o)", dir, fi.Mode().Perm())
	}
	return nil
}

// Store is an open state store.
type Store struct {
	db       *bolt.DB
	readOnly bool
	// Recovered names where Open set a damaged store aside ("" when the
	// store was sound).
	Recovered string
}

// Open opens (creating when needed) the store in dir for a run.
func Open(dir string) (*Store, error) {
	if err := CheckDir(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	db, err := bolt.Open(Path(dir), 0o600, &bolt.Options{Timeout: lockTimeout})
	recovered := ""
	if err != nil && !errors.Is(err, berrors.ErrTimeout) {
		// A damaged store (a disk fault, a file put there by hand) must
		// not stop every later run: it is set aside, and the lifecycle
		// starts fresh, which only gives owners their notices again.
		recovered = Path(dir) + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		if rerr := os.Rename(Path(dir), recovered); rerr != nil {
			return nil, fmt.Errorf("state: opening %s: %w (and setting it aside: %v)", Path(dir), err, rerr)
		}
		db, err = bolt.Open(Path(dir), 0o600, &bolt.Options{Timeout: lockTimeout})
	}
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", Path(dir), err)
	}
	s := &Store{db: db, Recovered: recovered}
	if err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketContainers); err != nil {
			return err
		}
		if meta.Get(keySchema) == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		return checkSchema(meta)
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("state: %s: %w", Path(dir), err)
	}
	return s, nil
}

// OpenReadOnly opens the store for plan and `ds01-pipe state`. A store
// that does not exist yet reads as empty (nil Store, nil error).
func OpenReadOnly(dir string) (*Store, error) {
	if _, err := os.Stat(Path(dir)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	db, err := bolt.Open(Path(dir), 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", Path(dir), err)
	}
	return &Store{db: db, readOnly: true}, nil
}

func checkSchema(meta *bolt.Bucket) error {
	raw := meta.Get(keySchema)
	if raw == nil {
		return nil
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil {
		return fmt.Errorf("schema version %q is not a number", raw)
	}
	if v != SchemaVersion {
		return fmt.Errorf("schema version %d, this ds01-pipe reads version %d", v, SchemaVersion)
	}
	return nil
}

// Close closes the store; a nil Store is fine.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	return s.db.Close()
}

// Load reads everything the store holds. A nil Store reads as empty.
func (s *Store) Load() (*Contents, error) {
	c := &Contents{SchemaVersion: SchemaVersion, Entries: map[string]Entry{}}
	if s == nil {
		return c, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if err := checkSchema(meta); err != nil {
				return err
			}
			if raw := meta.Get(keyRuns); raw != nil {
				if err := json.Unmarshal(raw, &c.Runs); err != nil {
					return fmt.Errorf("runs: %w", err)
				}
			}
		}
		b := tx.Bucket(bucketContainers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				// One damaged entry costs that container its memory (it
				// starts fresh, with full notice periods), not the run.
				return nil
			}
			c.Entries[string(k)] = e
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return c, nil
}

// Save replaces the entries with entries and appends run to the
// remembered runs, in one transaction. An entry that is not in entries is
// pruned: a caller that keeps an entry it did not change passes it again
// (as Load returned it).
func (s *Store) Save(entries map[string]Entry, run Run) error {
	if s == nil || s.readOnly {
		return errors.New("state: store is not open for writing")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketContainers); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		b, err := tx.CreateBucket(bucketContainers)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(entries))
		for k := range entries {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			raw, err := json.Marshal(entries[k])
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), raw); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		var runs []Run
		if raw := meta.Get(keyRuns); raw != nil {
			_ = json.Unmarshal(raw, &runs) // a damaged history starts over
		}
		runs = append(runs, run)
		if len(runs) > MaxRuns {
			runs = runs[len(runs)-MaxRuns:]
		}
		raw, err := json.Marshal(runs)
		if err != nil {
			return err
		}
		if err := meta.Put(keyRuns, raw); err != nil {
			return err
		}
		return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
	})
	if err != nil {
		return fmt.Errorf("state: saving: %w", err)
	}
	return nil
}
