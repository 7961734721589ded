package queue

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// serverLogger passes the embedded server's logs to slog.
type serverLogger struct{ log *slog.Logger }

// Noticef logs at debug level: the server's notices are its start-up
// banner and routine events, which the queue reports itself.
func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(msg(format, v)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(msg(format, v)) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Error(msg(format, v)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(msg(format, v)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(msg(format, v)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Debug(msg(format, v)) }

func msg(format string, v []any) string {
	s := strings.TrimSuffix(fmt.Sprintf(format, v...), ".")
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	return s
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", p)
	}
	if port == 0 {
		// The server reads 0 as "default port"; -1 asks for a random one.
		port = -1
	}
	return host, port, nil
}
