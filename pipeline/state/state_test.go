package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func TestSaveLoadAcrossOpens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{ID: "abc", StartedAt: t0}
	e := Entry{ContainerID: "abc", Name: "n", StartedAt: t0, FirstSeen: t0, LastActivity: t0, IdleStreak: 2,
		IdleWarned: t0.Add(time.Hour), Sample: &Sample{Read: t0, CPUTotalNs: 5, RxBytes: 7}}
	if err := s.Save(map[string]Entry{k.String(): e}, Run{Now: t0, Pipeline: "lifecycle"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state_dir mode = %v, %v; want 0700", fi.Mode(), err)
	}

	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ro.Load()
	ro.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c.Entries["abc@2026-03-01T12:00:00.123456789Z"]
	if !ok || got.IdleStreak != 2 || !got.IdleWarned.Equal(t0.Add(time.Hour)) || got.Sample.RxBytes != 7 {
		t.Fatalf("entries = %+v", c.Entries)
	}
	if r, ok := c.LastRun(); !ok || !r.Now.Equal(t0) {
		t.Fatalf("last run = %+v, %v", r, ok)
	}

	// A save with no entries prunes everything and remembers a second run.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(map[string]Entry{}, Run{Now: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c, err = s.Load()
	s.Close()
	if err != nil || len(c.Entries) != 0 || len(c.Runs) != 2 {
		t.Fatalf("after prune: %+v, %v", c, err)
	}
}

func TestOpenReadOnlyMissingIsEmpty(t *testing.T) {
	s, err := OpenReadOnly(t.TempDir())
	if err != nil || s != nil {
		t.Fatalf("OpenReadOnly = %v, %v", s, err)
	}
	c, err := s.Load()
	if err != nil || len(c.Entries) != 0 {
		t.Fatalf("Load on nil = %+v, %v", c, err)
	}
	if err := s.Save(nil, Run{}); err == nil {
		t.Fatal("Save on a nil store succeeded")
	}
}

func TestSchemaVersionRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(Path(dir), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("2"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("Open of a newer store: %v", err)
	}
}

func TestCheckDir(t *testing.T) {
	base := t.TempDir()
	if err := CheckDir("relative/dir"); err == nil {
		t.Error("relative state_dir accepted")
	}
	if err := CheckDir(filepath.Join(base, "missing")); err != nil {
		t.Errorf("missing state_dir: %v", err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(open); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable state_dir: %v", err)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(other); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("state_dir owned by another user: %v", err)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("the ownership check needs root")
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(file); err == nil {
		t.Error("a file as state_dir accepted")
	}
}

// As root, the folders and links above state_dir must be root's: a user
// who owns one could swap the store for a fresh one between runs (idle
// streaks and warnings start over: an idle container is never stopped) or
// point state_dir at a folder of their choice.
func TestCheckDirAbove(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the ownership check needs root")
		}
		t.Skip("needs root: only root can give folders away")
	}
	base := t.TempDir()
	users := filepath.Join(base, "users")
	target := filepath.Join(base, "target")
	for _, d := range []string{users, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(users, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(users, "state"), filepath.Join(link, "state")} {
		if err := CheckDir(dir); err == nil || !strings.Contains(err.Error(), "uid 4242") {
			t.Errorf("%s: %v, want refused (a folder or link of uid 4242 above it)", dir, err)
		}
		if _, err := Open(dir); err == nil {
			t.Errorf("%s: opened", dir)
		}
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("a store was made through the user's link: %v", entries)
	}
	if err := CheckDir(filepath.Join(base, "root", "state")); err != nil {
		t.Errorf("under root's folders: %v", err)
	}
}

// A damaged store is set aside and the run starts fresh.
func TestDamagedStoreSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(Path(dir), []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Recovered == "" {
		t.Fatal("no recovery reported")
	}
	if data, err := os.ReadFile(s.Recovered); err != nil || !strings.HasPrefix(string(data), "not a bbolt file") {
		t.Errorf("the damaged file was not kept aside: %v", err)
	}
	c, err := s.Load()
	if err != nil || len(c.Entries) != 0 {
		t.Errorf("fresh store: %+v, %v", c, err)
	}
}
