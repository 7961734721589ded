package receiver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// KeyProvider supplies the keys that verify deliveries. Keys is called for
// every request, so it should be cheap; the returned slice is not modified.
type KeyProvider interface {
	Keys() ([]Key, error)
}

// StaticKeys is a fixed set of keys, for keys that come from configuration
// rather than a mounted Secret.
type StaticKeys []Key

// Keys returns the keys.
func (s StaticKeys) Keys() ([]Key, error) { return s, nil }

// The files of a mounted Hookline signing Secret (type
// hookline.dev/signing-key). The ".previous" files exist only during the
// overlap after a rotation: the Secret's hookline.dev/previous-key-expires-at
// annotation says when it ends, and then Hookline removes the keys, so the
// kubelet removes the files and KeySource stops trusting the previous key.
const (
	SigningKeyFile         = "signing-key"
	PreviousSigningKeyFile = "signing-key.previous"
	PublicKeyFile          = "public-key"
	PreviousPublicKeyFile  = "public-key.previous"
)

// kubeletDataLink is the symbolic link the kubelet swaps atomically to
// publish a new version of a Secret volume's files.
const kubeletDataLink = "..data"

// DefaultCheckInterval is how often, at most, KeySource looks at the files
// for a change when no other interval is set.
const DefaultCheckInterval = 2 * time.Second

// KeySourceOptions tunes a KeySource; the zero value is fine.
type KeySourceOptions struct {
	// CheckInterval is the least time between two looks at the files; zero
	// or less means DefaultCheckInterval. A look costs a few stat calls
	// and is made by a call to Keys, never in the background.
	CheckInterval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives a warning when changed files cannot be read; nil
	// means slog.Default().
	Logger *slog.Logger
}

// KeySource reads the verification keys from a directory holding a mounted
// Hookline signing Secret and re-reads them when the files change, so a
// rotation needs no restart. It is safe for concurrent use.
//
// Each of the two slots, current and previous, is read from the public key
// file when there is one (Ed25519 secrets), otherwise from the signing key
// file. A receiver of an Ed25519 secret should mount only the public-key
// files (a volume's items field selects them): it then never holds the
// private key.
//
// Changes are noticed by comparing the target of the kubelet's "..data"
// link and the identity, size and modification time of the four files, at
// most once per CheckInterval. If the files change but cannot be read or
// parsed, KeySource logs a warning, keeps the keys it had and tries again
// at the next check.
type KeySource struct {
	dir      string
	interval time.Duration
	now      func() time.Time
	logger   *slog.Logger

	keys atomic.Pointer[[]Key]

	mu        sync.Mutex // guards the fields below, held while checking
	lastCheck time.Time
	state     dirState
}

// NewKeySource reads the keys in dir, failing if there are none or a key
// file cannot be parsed.
func NewKeySource(dir string, opts KeySourceOptions) (*KeySource, error) {
	s := &KeySource{
		dir:      dir,
		interval: opts.CheckInterval,
		now:      opts.Now,
		logger:   opts.Logger,
	}
	if s.interval <= 0 {
		s.interval = DefaultCheckInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	state := s.stat()
	keys, err := s.load()
	if err != nil {
		return nil, err
	}
	s.keys.Store(&keys)
	s.state = state
	s.lastCheck = s.now()
	return s, nil
}

// Keys returns the current keys, first re-reading the files if
// CheckInterval has passed since the last look and they changed. It does
// not fail once NewKeySource succeeded.
func (s *KeySource) Keys() ([]Key, error) {
	// Requests arriving while another one checks take the keys as they
	// are rather than queue behind the file system.
	if s.mu.TryLock() {
		s.refresh()
		s.mu.Unlock()
	}
	keys := *s.keys.Load()
	return append([]Key(nil), keys...), nil
}

// refresh must be called with mu held.
func (s *KeySource) refresh() {
	now := s.now()
	// A clock that went backwards counts as time passed.
	if d := now.Sub(s.lastCheck); d >= 0 && d < s.interval {
		return
	}
	s.lastCheck = now
	state := s.stat()
	if state.equal(s.state) {
		return
	}
	keys, err := s.load()
	if err != nil {
		s.logger.Warn("Could not reload webhook verification keys, keeping the previous ones", "dir", s.dir, "error", err)
		return
	}
	s.keys.Store(&keys)
	// Recorded only on success, so a failed reload is retried.
	s.state = state
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	s.logger.Info("Reloaded webhook verification keys", "dir", s.dir, "keys", ids)
}

// load reads both slots.
func (s *KeySource) load() ([]Key, error) {
	var keys []Key
	for _, slot := range [][2]string{
		{PublicKeyFile, SigningKeyFile},
		{PreviousPublicKeyFile, PreviousSigningKeyFile},
	} {
		k, err := s.loadSlot(slot[0], slot[1])
		if err != nil {
			return nil, err
		}
		if !k.IsZero() && !containsKey(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("load webhook keys from %s: none of %s, %s, %s, %s found",
			s.dir, PublicKeyFile, SigningKeyFile, PreviousPublicKeyFile, PreviousSigningKeyFile)
	}
	return keys, nil
}

// loadSlot reads the first of names that exists; the zero Key means none.
func (s *KeySource) loadSlot(names ...string) (Key, error) {
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Key{}, fmt.Errorf("load webhook keys from %s: %w", s.dir, err)
		}
		k, err := ParseKey(string(data))
		if err != nil {
			return Key{}, fmt.Errorf("load webhook keys from %s: file %s: %w", s.dir, name, err)
		}
		return k, nil
	}
	return Key{}, nil
}

func containsKey(keys []Key, k Key) bool {
	for _, have := range keys {
		if have.ID() == k.ID() && have.Algorithm() == k.Algorithm() {
			return true
		}
	}
	return false
}

// dirState is what is compared to notice a change of the files.
type dirState struct {
	link  string // target of ..data, "" if there is none
	files [4]fs.FileInfo
}

var keyFiles = [4]string{SigningKeyFile, PreviousSigningKeyFile, PublicKeyFile, PreviousPublicKeyFile}

func (s *KeySource) stat() dirState {
	var st dirState
	st.link, _ = os.Readlink(filepath.Join(s.dir, kubeletDataLink))
	for i, name := range keyFiles {
		// Stat follows the kubelet's per-file links into the current
		// timestamped directory, so a swap shows as a different file.
		// Errors count as absence: the next load reports them.
		st.files[i], _ = os.Stat(filepath.Join(s.dir, name))
	}
	return st
}

func (a dirState) equal(b dirState) bool {
	if a.link != b.link {
		return false
	}
	for i := range a.files {
		x, y := a.files[i], b.files[i]
		switch {
		case x == nil && y == nil:
		case x == nil || y == nil:
			return false
		case !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()):
			return false
		}
	}
	return true
}
