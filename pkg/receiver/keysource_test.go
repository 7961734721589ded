package receiver

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// secretVolume lays files out the way the kubelet's atomic writer does for
// a Secret volume: the files of each version in a timestamped directory,
// "..data" a link to the current one, swapped by renaming a new link over
// it, and each visible name a link through "..data".
type secretVolume struct {
	t       *testing.T
	dir     string
	version int
}

func newSecretVolume(t *testing.T, files map[string]string) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.publish(files)
	return v
}

func (v *secretVolume) publish(files map[string]string) {
	t := v.t
	t.Helper()
	v.version++
	old, _ := os.Readlink(filepath.Join(v.dir, kubeletDataLink))
	versionDir := fmt.Sprintf("..2026_05_04_10_30_%02d.%09d", v.version, v.version)
	if err := os.Mkdir(filepath.Join(v.dir, versionDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, versionDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(versionDir, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, kubeletDataLink)); err != nil {
		t.Fatal(err)
	}
	for _, name := range keyFiles {
		link := filepath.Join(v.dir, name)
		_, wanted := files[name]
		_, err := os.Lstat(link)
		switch {
		case wanted && errors.Is(err, fs.ErrNotExist):
			if err := os.Symlink(filepath.Join(kubeletDataLink, name), link); err != nil {
				t.Fatal(err)
			}
		case !wanted && err == nil:
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func keyIDs(t *testing.T, s *KeySource) []string {
	t.Helper()
	keys, err := s.Keys()
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return ids
}

func encodedSecret(p hmacPair) string { return "whsec_" + b64of(p.secret) + "\n" }

func TestKeySourceFollowsKubeletRotation(t *testing.T) {
	a, b := newHMAC(t, 1), newHMAC(t, 2)
	vol := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(a)})
	clk := newTestClock()
	var logs bytes.Buffer
	src, err := NewKeySource(vol.dir, KeySourceOptions{
		CheckInterval: time.Minute,
		Now:           clk.Now,
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("NewKeySource: %v", err)
	}
	if got := keyIDs(t, src); !slices.Equal(got, []string{a.key.ID()}) {
		t.Fatalf("keys = %v, want [a]", got)
	}

	// Rotation: b becomes current, a stays trusted during the overlap.
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b), PreviousSigningKeyFile: encodedSecret(a)})
	clk.Advance(30 * time.Second)
	if got := keyIDs(t, src); !slices.Equal(got, []string{a.key.ID()}) {
		t.Fatalf("keys within the check interval = %v, want the old [a]", got)
	}
	clk.Advance(30 * time.Second)
	if got := keyIDs(t, src); !slices.Equal(got, []string{b.key.ID(), a.key.ID()}) {
		t.Fatalf("keys after the rotation = %v, want [b a]", got)
	}
	body := []byte(testBody)
	for _, p := range []hmacPair{a, b} {
		keys, _ := src.Keys()
		h := webhookHeader(testID, testTS, signV1(p.secret, testID, testTS, body))
		if err := (Verifier{Now: func() time.Time { return testNow }}).Verify(h, body, keys); err != nil {
			t.Errorf("delivery signed with %v during the overlap: %v", p.key, err)
		}
	}

	// The overlap ends: the previous file disappears.
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b)})
	clk.Advance(time.Minute)
	if got := keyIDs(t, src); !slices.Equal(got, []string{b.key.ID()}) {
		t.Fatalf("keys after the overlap = %v, want [b]", got)
	}
	if !strings.Contains(logs.String(), "Reloaded webhook verification keys") {
		t.Errorf("no reload logged: %s", logs.String())
	}
	for _, p := range []hmacPair{a, b} {
		if strings.Contains(logs.String(), b64of(p.secret)) {
			t.Fatalf("log holds a secret: %s", logs.String())
		}
	}
}

func TestKeySourceKeepsKeysWhenReloadFails(t *testing.T) {
	a, c := newHMAC(t, 1), newHMAC(t, 3)
	vol := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(a)})
	clk := newTestClock()
	var logs bytes.Buffer
	src, err := NewKeySource(vol.dir, KeySourceOptions{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const garbage = "whsec_dG9vIHNob3J0IGEga2V5" // 15 bytes
	vol.publish(map[string]string{SigningKeyFile: garbage})
	clk.Advance(DefaultCheckInterval)
	if got := keyIDs(t, src); !slices.Equal(got, []string{a.key.ID()}) {
		t.Fatalf("keys after a bad update = %v, want the old [a]", got)
	}
	if !strings.Contains(logs.String(), "Could not reload webhook verification keys") ||
		!strings.Contains(logs.String(), "file signing-key") {
		t.Errorf("failed reload not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), garbage[6:]) {
		t.Errorf("log quotes the file: %s", logs.String())
	}
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(c)})
	clk.Advance(DefaultCheckInterval)
	if got := keyIDs(t, src); !slices.Equal(got, []string{c.key.ID()}) {
		t.Fatalf("keys after a good update = %v, want [c]", got)
	}
}

func TestKeySourceRetriesAFailedReload(t *testing.T) {
	// A file made readable again keeps its identity, size and modification
	// time, so only a retry on the next check (not a noticed change) can
	// pick it up.
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode: unreadable files cannot be simulated")
	}
	a, b := newHMAC(t, 1), newHMAC(t, 2)
	vol := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(a)})
	clk := newTestClock()
	src, err := NewKeySource(vol.dir, KeySourceOptions{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b)})
	target := filepath.Join(vol.dir, SigningKeyFile)
	if err := os.Chmod(target, 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultCheckInterval)
	if got := keyIDs(t, src); !slices.Equal(got, []string{a.key.ID()}) {
		t.Fatalf("keys while unreadable = %v, want the old [a]", got)
	}
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultCheckInterval)
	if got := keyIDs(t, src); !slices.Equal(got, []string{b.key.ID()}) {
		t.Fatalf("keys once readable = %v, want [b]", got)
	}
}

func TestKeySourceEd25519PrefersPublicKeys(t *testing.T) {
	signer, other, prev := newEd25519(t, 1), newEd25519(t, 2), newEd25519(t, 3)
	pubOf := func(p edPair) string { return "whpk_" + b64of(p.priv.Public().(ed25519.PublicKey)) }
	privOf := func(p edPair) string { return "whsk_" + b64of(p.priv) }
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"whole Secret", map[string]string{SigningKeyFile: privOf(signer), PublicKeyFile: pubOf(signer)}, []string{signer.key.ID()}},
		{"public keys only", map[string]string{PublicKeyFile: pubOf(signer), PreviousPublicKeyFile: pubOf(prev)}, []string{signer.key.ID(), prev.key.ID()}},
		{"private key only", map[string]string{SigningKeyFile: privOf(signer)}, []string{signer.key.ID()}},
		// Were the private key read, "other" would be trusted.
		{"public key wins", map[string]string{SigningKeyFile: privOf(other), PublicKeyFile: pubOf(signer)}, []string{signer.key.ID()}},
		{"per slot", map[string]string{PublicKeyFile: pubOf(signer), PreviousSigningKeyFile: privOf(prev)}, []string{signer.key.ID(), prev.key.ID()}},
		{"previous equal to current", map[string]string{PublicKeyFile: pubOf(signer), PreviousPublicKeyFile: pubOf(signer)}, []string{signer.key.ID()}},
		{"previous only", map[string]string{PreviousPublicKeyFile: pubOf(prev)}, []string{prev.key.ID()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := newSecretVolume(t, tc.files)
			src, err := NewKeySource(vol.dir, KeySourceOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := keyIDs(t, src); !slices.Equal(got, tc.want) {
				t.Fatalf("keys = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKeySourcePlainDirectory(t *testing.T) {
	// Files replaced by rename, as configuration tools do outside Kubernetes.
	a, b := newHMAC(t, 1), newHMAC(t, 2)
	dir := t.TempDir()
	write := func(name, content string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write(SigningKeyFile, encodedSecret(a))
	clk := newTestClock()
	src, err := NewKeySource(dir, KeySourceOptions{CheckInterval: time.Second, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	write(SigningKeyFile, encodedSecret(b))
	write(PreviousSigningKeyFile, encodedSecret(a))
	clk.Advance(time.Second)
	if got := keyIDs(t, src); !slices.Equal(got, []string{b.key.ID(), a.key.ID()}) {
		t.Fatalf("keys = %v, want [b a]", got)
	}
	if err := os.Remove(filepath.Join(dir, PreviousSigningKeyFile)); err != nil {
		t.Fatal(err)
	}
	// A clock that went backwards still leads to a check.
	clk.Advance(-time.Hour)
	if got := keyIDs(t, src); !slices.Equal(got, []string{b.key.ID()}) {
		t.Fatalf("keys = %v, want [b]", got)
	}
}

func TestNewKeySourceErrors(t *testing.T) {
	const bad = "whsec_c2hvcnQgc2VjcmV0" // 12 bytes
	empty := t.TempDir()
	invalid := newSecretVolume(t, map[string]string{SigningKeyFile: bad}).dir
	invalidPrevious := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(newHMAC(t, 1)), PreviousSigningKeyFile: "whpk_AAAA"}).dir
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"empty directory", empty, "none of public-key, signing-key, public-key.previous, signing-key.previous found"},
		{"missing directory", filepath.Join(empty, "nope"), "none of"},
		{"invalid key", invalid, "file signing-key: parse webhook key: whsec_ HMAC-SHA256 secret is 12 bytes"},
		{"invalid previous key", invalidPrevious, "file signing-key.previous: parse webhook key: whpk_ Ed25519 public key is 3 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewKeySource(tc.dir, KeySourceOptions{})
			if err == nil {
				t.Fatalf("NewKeySource succeeded with %v", keyIDs(t, src))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), bad[6:]) {
				t.Fatalf("error %q quotes the file", err)
			}
		})
	}
}

func TestKeySourceConcurrentRotation(t *testing.T) {
	a, b := newHMAC(t, 1), newHMAC(t, 2)
	vol := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(a)})
	src, err := NewKeySource(vol.dir, KeySourceOptions{CheckInterval: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	valid := map[string]bool{a.key.ID(): true, b.key.ID(): true}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				keys, err := src.Keys()
				if err != nil || len(keys) == 0 {
					t.Errorf("Keys = %v, %v", keys, err)
					return
				}
				for _, k := range keys {
					if !valid[k.ID()] {
						t.Errorf("unexpected key %v", k)
						return
					}
				}
			}
		})
	}
	for i := range 20 {
		cur, prev := a, b
		if i%2 == 0 {
			cur, prev = b, a
		}
		vol.publish(map[string]string{SigningKeyFile: encodedSecret(cur), PreviousSigningKeyFile: encodedSecret(prev)})
	}
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b)})
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for !slices.Equal(keyIDs(t, src), []string{b.key.ID()}) {
		if time.Now().After(deadline) {
			t.Fatalf("keys never settled on [b]: %v", keyIDs(t, src))
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
}
