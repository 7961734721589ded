package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clocktesting "k8s.io/utils/clock/testing"
)

// testNow is the time of the fake clock the commands run with.
var testNow = time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)

type result struct {
	stdout, stderr string
	code           int
}

// run runs the plugin in-process with stdin, a fake clock and no kubeconfig
// at all, so nothing of the machine's leaks in.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-kubeconfig"))
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, Options{
		Streams: genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut},
		Clock:   clocktesting.NewFakeClock(testNow),
	})
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// wantError checks the exit code and that stderr is exactly one "error: "
// line containing every fragment.
func (r result) wantError(t *testing.T, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d (stdout %q, stderr %q)", r.code, code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q is not one line starting with \"error: \"", r.stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(r.stderr, f) {
			t.Errorf("stderr %q lacks %q", r.stderr, f)
		}
	}
}

func TestEveryCommandHelpHasAnExample(t *testing.T) {
	root := NewCommand(Options{Streams: genericiooptions.NewTestIOStreamsDiscard()})
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		if c.Name() == "help" {
			return
		}
		seen++
		args := append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "kubectl hookline")), "--help")
		r := run(t, "", args...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "kubectl hookline") {
			t.Errorf("%s --help: exit %d, output without an example:\n%s%s", c.CommandPath(), r.code, r.stdout, r.stderr)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if seen != 7 {
		t.Errorf("walked %d commands, want the root and its 6 commands", seen)
	}
	if r := run(t, "", "--help"); !strings.Contains(r.stdout, "3  a verification failed, a test delivery did not succeed, or replayed\n     deliveries were dead-lettered again") ||
		!strings.Contains(r.stdout, "4  timed out waiting") {
		t.Errorf("the root help does not document the exit codes:\n%s", r.stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"; see kubectl hookline --help`},
		{[]string{"send", "--bogus"}, "unknown flag: --bogus; see kubectl hookline send --help"},
		{[]string{"send"}, "--type is required"},
		{[]string{"send", "--type", "a.b", "--data", "{x"}, "--data is not valid JSON (invalid character 'x'"},
		{[]string{"send", "--type", "a.b", "--data", ""}, "--data is not valid JSON (it is empty)"},
		{[]string{"send", "--type", "a.b", "--data", "1", "-f", "x.json"}, "with --data or -f, not both"},
		{[]string{"send", "--to", "billing", "--id", "x"}, "--id does not apply to a test delivery"},
		{[]string{"send", "extra", "--type", "a.b"}, "takes no arguments"},
		{[]string{"status", "a", "b"}, "at most one SUBSCRIPTION"},
		{[]string{"status", "-o", "name"}, `-o "name" is not one of table, wide, json, yaml`},
		{[]string{"status", "billing", "-A"}, "cannot be combined with -A"},
		{[]string{"rotate"}, "needs a WEBHOOKSECRET name"},
		{[]string{"rotate", "a", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"replay", "billing"}, "--since is required"},
		{[]string{"replay", "billing", "--since", "1h", "--until", "2h"}, "--until must be shorter than --since"},
		{[]string{"replay"}, "needs a SUBSCRIPTION name"},
		{[]string{"verify"}, "pass the keys: --secret WEBHOOKSECRET, or --key"},
		{[]string{"verify", "--secret", "s", "--key", "whsec_x"}, "--secret or --key, not both"},
		{[]string{"verify", "--key", "whsec_notbase64!"}, "--key #1: parse webhook key:"},
		{[]string{"verify", "--key", "whsec_x", "--now", "yesterday"}, `--now "yesterday" is not an RFC 3339 time`},
		{[]string{"version", "extra"}, "takes no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, "", tc.args...)
			r.wantError(t, ExitUsage, tc.want)
		})
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{usageErrorf("x"), ExitUsage},
		{timeoutErrorf("x"), ExitTimeout},
		{failed(), ExitFailed},
		{context.Canceled, ExitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{3*time.Second + 400*time.Millisecond, "3s"},
		{5 * time.Minute, "5m"},
		{7*time.Minute + 12*time.Second, "7m12s"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{26 * time.Hour, "26h"},
	} {
		if got := shortDuration(tc.d); got != tc.want {
			t.Errorf("shortDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine(" a\nb\r\nc \n"); got != "a; b; c" {
		t.Errorf("oneLine = %q", got)
	}
}
