package engine

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// eventBacklog is how many past events the engine keeps for `since`.
const eventBacklog = 1024

// eventLog keeps recent events and fans new ones out to subscribers.
type eventLog struct {
	mu   sync.Mutex
	past []events.Message
	subs map[chan events.Message]struct{}
}

var eventLogs sync.Map // *Engine -> *eventLog

func (e *Engine) events() *eventLog {
	v, _ := eventLogs.LoadOrStore(e, &eventLog{subs: map[chan events.Message]struct{}{}})
	return v.(*eventLog)
}

// emit records an event and sends it to the subscribers; a subscriber too
// slow to take it misses it rather than stalling the engine.
func (e *Engine) emit(typ, action, id string, attrs map[string]string) {
	now := time.Now()
	m := events.Message{
		Type: events.Type(typ), Action: events.Action(action),
		Actor: events.Actor{ID: id, Attributes: attrs},
		Scope: "local", Time: now.Unix(), TimeNano: now.UnixNano(),
	}
	l := e.events()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.past = append(l.past, m)
	if len(l.past) > eventBacklog {
		l.past = append(l.past[:0:0], l.past[len(l.past)-eventBacklog:]...)
	}
	for ch := range l.subs {
		select {
		case ch <- m:
		default:
		}
	}
}

// EventFilter selects events as the filters of GET /events do.
type EventFilter map[string][]string

// Match reports whether m passes every filter key (values of one key are
// alternatives).
func (f EventFilter) Match(m events.Message) bool {
	for key, vals := range f {
		if len(vals) == 0 {
			continue
		}
		ok := false
		for _, v := range vals {
			switch key {
			case "type":
				ok = string(m.Type) == v
			case "event":
				ok = string(m.Action) == v || strings.HasPrefix(string(m.Action), v+":")
			case "container":
				ok = m.Type == events.ContainerEventType && (m.Actor.ID == v || strings.HasPrefix(m.Actor.ID, v) || m.Actor.Attributes["name"] == v)
			case "image":
				ok = m.Actor.Attributes["image"] == v || (m.Type == events.ImageEventType && (m.Actor.ID == v || m.Actor.Attributes["name"] == v))
			case "volume":
				ok = m.Type == events.VolumeEventType && m.Actor.ID == v
			case "label":
				k, want, hasVal := strings.Cut(v, "=")
				got, present := m.Actor.Attributes[k]
				ok = present && (!hasVal || got == want)
			case "scope":
				ok = m.Scope == v
			default:
				ok = true
			}
			if ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Events returns the recorded events between since and until (zero for
// unbounded) that match f, and, unless until has passed, a channel of the
// new ones that closes when ctx is done or until passes. As Docker's, a
// request with neither since nor until gets no past events, only new ones.
func (e *Engine) Events(ctx context.Context, since, until time.Time, f EventFilter) ([]events.Message, <-chan events.Message) {
	l := e.events()
	in := make(chan events.Message, 256)
	l.mu.Lock()
	var past []events.Message
	for _, m := range l.past {
		if since.IsZero() && until.IsZero() {
			break
		}
		t := time.Unix(0, m.TimeNano)
		if (since.IsZero() || !t.Before(since)) && (until.IsZero() || !t.After(until)) && f.Match(m) {
			past = append(past, m)
		}
	}
	if !until.IsZero() && !until.After(time.Now()) {
		l.mu.Unlock()
		return past, nil
	}
	l.subs[in] = struct{}{}
	l.mu.Unlock()
	out := make(chan events.Message, 256)
	go func() {
		defer close(out)
		defer func() {
			l.mu.Lock()
			delete(l.subs, in)
			l.mu.Unlock()
		}()
		var deadline <-chan time.Time
		if !until.IsZero() {
			t := time.NewTimer(time.Until(until))
			defer t.Stop()
			deadline = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-deadline:
				return
			case m := <-in:
				if !f.Match(m) {
					continue
				}
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return past, out
}
