package cli

import (
	"errors"
	"fmt"
	"strings"
)

// Exit codes of kubectl hookline, documented in its --help.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitError: the command could not do it (API refused, unreachable, not
	// found, ...).
	ExitError = 1
	// ExitUsage: the command line is wrong (unknown flag, bad value).
	ExitUsage = 2
	// ExitFailed: a verification found the request invalid, a test
	// delivery did not succeed, or replayed deliveries were dead-lettered
	// again.
	ExitFailed = 3
	// ExitTimeout: waiting for a rotation or a replay ran out of time.
	ExitTimeout = 4
)

// exitError carries an exit code. An empty message means the outcome was
// already printed (a failed verification prints its "invalid: ..." line on
// stdout) and nothing goes to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageErrorf reports a mistake on the command line (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

// timeoutErrorf reports a wait that ran out of time (exit 4).
func timeoutErrorf(format string, args ...any) error {
	return &exitError{code: ExitTimeout, msg: fmt.Sprintf(format, args...)}
}

// failed reports an outcome already printed, such as an invalid signature
// or an unsuccessful test delivery (exit 3).
func failed() error { return &exitError{code: ExitFailed} }

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return ExitError
}

// oneLine makes an error message fit the one-line promise: messages from
// servers and libraries may carry newlines.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r\n", "; ")
	s = strings.ReplaceAll(s, "\n", "; ")
	return s
}
