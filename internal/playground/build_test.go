package playground

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestFindRepoRoot(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(root, "clone")
	write(filepath.Join(repo, "go.mod"), "// Hookline\nmodule github.com/hookline/hookline\n\ngo 1.26\n")
	// A nested module of its own, as hack/envtest is.
	write(filepath.Join(repo, "hack", "envtest", "go.mod"), "module github.com/hookline/hookline/hack/envtest\n")
	write(filepath.Join(root, "other", "go.mod"), "module \"example.com/other\"\n")
	for _, tc := range []struct {
		name, dir, want, wantErr string
	}{
		{name: "the root itself", dir: repo, want: repo},
		{name: "a package below", dir: filepath.Join(repo, "cmd", "hookline-dev"), want: repo},
		{name: "inside a nested module", dir: filepath.Join(repo, "hack", "envtest"), want: repo},
		{name: "relative path is resolved", dir: "", want: ""},
		{name: "outside any clone", dir: filepath.Join(root, "other", "pkg"), wantErr: "no go.mod of module github.com/hookline/hookline in this directory or above"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, want := tc.dir, tc.want
			if dir == "" {
				// This package's own directory, given as ".".
				dir = "."
				abs, err := filepath.Abs(filepath.Join("..", ".."))
				if err != nil {
					t.Fatal(err)
				}
				want = abs
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := FindRepoRoot(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Errorf("FindRepoRoot = %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != want {
				t.Errorf("FindRepoRoot = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestDeclaresModule(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		want  bool
	}{
		{"module github.com/hookline/hookline\n", true},
		{"module \"github.com/hookline/hookline\"\n", true},
		{"  module   github.com/hookline/hookline // comment\n", true},
		{"module github.com/hookline/hookline/hack/envtest\n", false},
		{"// module github.com/hookline/hookline\nmodule other\n", false},
		{"require github.com/hookline/hookline v1.0.0\n", false},
		{"", false},
	} {
		if got := declaresModule([]byte(tc.gomod), ModulePath); got != tc.want {
			t.Errorf("declaresModule(%q) = %v, want %v", tc.gomod, got, tc.want)
		}
	}
}

// fakeRoot is a source tree whose hack/envtest.sh is script.
func fakeRoot(t *testing.T, script string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "hack"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "hack", "envtest.sh"), []byte("#!/bin/sh\n"+script), 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

// waitOutput polls until out holds want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q lacks %q", out.String(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The script's progress is shown as it comes; a silence of QuietInterval
// gets a line of its own; its stdout is the directory.
func TestEnvtestAssetsShowsProgress(t *testing.T) {
	root := fakeRoot(t, `echo "Building kube-apiserver" >&2
while [ ! -e "$PWD/go-on" ]; do sleep 0.02; done
echo "  kube-apiserver built" >&2
echo /cache/envtest/v1.37.2-abc
`)
	clk := clocktesting.NewFakeClock(time.Now())
	var out syncBuffer
	type result struct {
		dir string
		err error
	}
	done := make(chan result, 1)
	go func() {
		dir, err := EnvtestAssets(context.Background(), root, &out, clk)
		done <- result{dir, err}
	}()
	waitOutput(t, &out, "  Building kube-apiserver\n")
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(QuietInterval - time.Second)
	// Not silent long enough yet; a step later, it is.
	clk.Step(time.Second)
	waitOutput(t, &out, "still running")
	if err := os.WriteFile(filepath.Join(root, "go-on"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.dir != "/cache/envtest/v1.37.2-abc" {
		t.Fatalf("EnvtestAssets = %q, %v", r.dir, r.err)
	}
	want := "  Building kube-apiserver\n" +
		"  still running hack/envtest.sh, 15s so far...\n" +
		"    kube-apiserver built\n"
	if got := out.String(); got != want {
		t.Errorf("printed\n%q\nwant\n%q", got, want)
	}
}

func TestEnvtestAssetsFailures(t *testing.T) {
	for _, tc := range []struct {
		name, script, wantErr string
	}{
		{name: "the script fails", script: "echo 'go: no network' >&2; exit 2\n", wantErr: "building the API server binaries with hack/envtest.sh: exit status 2"},
		{name: "the script prints no directory", script: "exit 0\n", wantErr: "hack/envtest.sh printed no directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			_, err := EnvtestAssets(context.Background(), fakeRoot(t, tc.script), &out, clocktesting.NewFakeClock(time.Now()))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Cancelling stops the script and what it runs, as a Ctrl-C during the
// first, long build must.
func TestEnvtestAssetsCancelled(t *testing.T) {
	root := fakeRoot(t, `sleep 1000 &
echo $! > "$PWD/child"
echo "Building" >&2
wait
`)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := EnvtestAssets(ctx, root, &out, clocktesting.NewFakeClock(time.Now()))
		done <- err
	}()
	waitOutput(t, &out, "Building")
	raw, err := os.ReadFile(filepath.Join(root, "child"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for running(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the script's child %d still runs", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
