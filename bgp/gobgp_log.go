package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// logRepeatWindow is how long a repeated gobgp line (same message, same
// peer) stays demoted to Debug after it was logged at its own level.
const logRepeatWindow = time.Minute

// gobgpLevels overrides the level of gobgp messages. gobgp logs lifecycle
// details at Info (every peer added, every session up and down, which the
// Speaker reports itself) and some expected events at Warn; Skein keeps
// Info for its own transitions and Warn for what needs attention.
var gobgpLevels = map[string]slog.Level{
	"Peer Up":                                 slog.LevelDebug,
	"Peer Down":                               slog.LevelDebug,
	"Closed an accepted connection":           slog.LevelDebug,
	"restart flag is not set":                 slog.LevelDebug,
	"peer graceful restart":                   slog.LevelDebug,
	"sent notification":                       slog.LevelInfo,
	"received notification":                   slog.LevelInfo,
	"graceful restart timer expired":          slog.LevelInfo,
	"failed to close existing tcp connection": slog.LevelDebug, // closing a closed conn at shutdown
	"Mismatched local address":                slog.LevelWarn,
	"Can't find configuration for a new passive connection": slog.LevelWarn,
}

// peerError is the last problem gobgp reported about one neighbour.
type peerError struct {
	Text string
	At   time.Time
}

// gobgpLogger adapts slog to gobgp's log.Logger. It never floods: gobgp
// Info lines become Debug (see gobgpLevels), and a line repeated for the same
// peer is logged at its level at most once per logRepeatWindow, Debug in
// between. It also remembers, per neighbour address, the last error gobgp
// reported (connect failures, notifications, hold timer expiry), which
// gobgp's API does not expose, for the debug state.
type gobgpLogger struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	last    map[string]time.Time // "level msg peer" → when last logged above Debug
	peerErr map[string]peerError // neighbour address → last error
}

var _ log.Logger = (*gobgpLogger)(nil)

func newGobgpLogger(l *slog.Logger) *gobgpLogger {
	return &gobgpLogger{
		log:     l.With("component", "gobgp"),
		now:     time.Now,
		last:    map[string]time.Time{},
		peerErr: map[string]peerError{},
	}
}

// Panic logs msg and panics, as gobgp expects: it calls Panic on internal
// bugs only.
func (l *gobgpLogger) Panic(msg string, fields log.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

// Fatal logs msg at Error. gobgp's default logger would exit the process;
// only main may do that in Skein, and gobgp calls Fatal only for a gRPC
// listener Skein does not start and for an internal bug.
func (l *gobgpLogger) Fatal(msg string, fields log.Fields) { l.emit(slog.LevelError, msg, fields) }

// Error implements log.Logger.
func (l *gobgpLogger) Error(msg string, fields log.Fields) { l.emit(slog.LevelError, msg, fields) }

// Warn implements log.Logger.
func (l *gobgpLogger) Warn(msg string, fields log.Fields) { l.emit(slog.LevelWarn, msg, fields) }

// Info implements log.Logger; gobgp's Info lines are Debug here unless
// gobgpLevels says otherwise.
func (l *gobgpLogger) Info(msg string, fields log.Fields) { l.emit(slog.LevelDebug, msg, fields) }

// Debug implements log.Logger.
func (l *gobgpLogger) Debug(msg string, fields log.Fields) { l.emit(slog.LevelDebug, msg, fields) }

// SetLevel is ignored: the slog handler decides what is printed.
func (l *gobgpLogger) SetLevel(log.LogLevel) {}

// GetLevel reports Debug so that gobgp produces the lines that carry
// per-peer errors ("failed to connect" is only logged at Debug); the
// adapter drops what the handler does not want before formatting anything.
func (l *gobgpLogger) GetLevel() log.LogLevel { return log.DebugLevel }

func (l *gobgpLogger) emit(level slog.Level, msg string, fields log.Fields) {
	peer, _ := fields["Key"].(string)
	if text := peerErrorText(msg, fields); text != "" && peer != "" {
		l.mu.Lock()
		l.peerErr[peer] = peerError{Text: text, At: l.now()}
		l.mu.Unlock()
	}
	if lv, ok := gobgpLevels[msg]; ok {
		level = lv
	}
	if level > slog.LevelDebug && l.repeated(level, msg, peer) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields)+1)
	if peer != "" {
		attrs = append(attrs, slog.String("peer", peer))
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch k {
		case "Key", log.FieldFacility:
			continue
		case "Error", "Err":
			attrs = append(attrs, slog.Any("err", fields[k]))
		default:
			attrs = append(attrs, slog.Any(strings.ToLower(k), fields[k]))
		}
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

// repeated reports whether the same line was logged above Debug within
// logRepeatWindow, and records it when not.
func (l *gobgpLogger) repeated(level slog.Level, msg, peer string) bool {
	key := level.String() + " " + msg + " " + peer
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < logRepeatWindow {
		return true
	}
	if len(l.last) > 1000 { // bound the memory a storm of distinct lines can take
		for k, t := range l.last {
			if now.Sub(t) >= logRepeatWindow {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	return false
}

// lastPeerError returns the last error recorded for a neighbour address.
func (l *gobgpLogger) lastPeerError(addr string) (peerError, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peerErr[addr]
	return e, ok
}

// forgetPeer drops what is recorded about a neighbour that was removed.
func (l *gobgpLogger) forgetPeer(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.peerErr, addr)
}

// peerErrorText renders the gobgp lines that explain why a session is not
// (or no longer) established; empty for the others.
func peerErrorText(msg string, f log.Fields) string {
	switch msg {
	case "failed to connect":
		return fmt.Sprintf("connect: %v", f["Error"])
	case "received notification", "sent notification":
		text := msg
		if code, ok := f["Code"].(uint8); ok {
			sub, _ := f["Subcode"].(uint8)
			text += ": " + bgp.NewNotificationErrorCode(code, sub).String()
		} else if d, ok := f["Data"]; ok {
			text += fmt.Sprintf(": %v", d)
		}
		if r, ok := f["Communicated-Reason"].(string); ok && r != "" {
			text += " (" + r + ")"
		}
		return text
	case "hold timer expired", "graceful restart timer expired":
		return msg
	case "Peer Down":
		return fmt.Sprintf("session down: %v", f["Reason"])
	case "Mismatched local address":
		return fmt.Sprintf("connection to local address %v, want %v", f["Addr"], f["Configured addr"])
	}
	return ""
}
