package store

import (
	"encoding/json"
	"fmt"
)

// Record encoding: one version byte, then JSON. The version byte lets a later
// release read what an earlier one wrote; an unknown version is reported, not
// guessed at.
const recordV1 = 1

// MarshalCorrelation encodes a correlation for storage: the binary
// encoding (recordV2, binary.go).
func MarshalCorrelation(c *Correlation) ([]byte, error) {
	b, err := appendCorrelation([]byte{recordV2}, c)
	if err != nil {
		return nil, fmt.Errorf("encode correlation %s: %w", c.ID, err)
	}
	return b, nil
}

// UnmarshalCorrelation decodes a stored correlation, binary or (written
// before schema 3) JSON, and checks it. Any problem is reported as an error
// wrapping ErrCorrupt; it never panics.
func UnmarshalCorrelation(b []byte) (*Correlation, error) {
	var c Correlation
	if len(b) > 0 && b[0] == recordV2 {
		p, err := decodeCorrelation(b[1:])
		if err != nil {
			return nil, err
		}
		c = *p
	} else if err := unmarshalRecord(b, &c); err != nil {
		return nil, err
	}
	if err := c.validateStored(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if c.Held.Count == 0 && len(c.Replies) > 0 {
		// Written before schema 3 (replies inside the record), or an
		// export line of an earlier release: count what it holds.
		for _, r := range c.Replies {
			c.Held.add(c.Pattern, r)
		}
	}
	if c.EventSeq == 0 && len(c.Events) > 0 { // likewise for the timeline
		c.EventSeq = len(c.Events) + c.EventsDropped
	}
	if c.LateSeq == 0 && len(c.Late) > 0 { // and for the late ring
		for _, r := range c.Late {
			c.LateRing = append(c.LateRing, LateEntry{Bytes: len(r.Body), Keys: lateKeys(c.Pattern, r)})
		}
		c.LateSeq = len(c.Late)
	}
	return &c, nil
}

// EarlyReply is a reply buffered for a ref not registered yet.
type EarlyReply struct {
	// Namespace is empty in early replies stored before schema 2 (read as
	// DefaultNamespace).
	Namespace     string `json:"namespace,omitempty"`
	CorrelationID string `json:"correlation_id"`
	Reply         Reply  `json:"reply"`
}

// Ref returns the address the early reply waits for.
func (e EarlyReply) Ref() Ref { return Ref{Namespace: e.Namespace, ID: e.CorrelationID}.Norm() }

// MarshalEarly encodes an early reply for storage.
func MarshalEarly(e EarlyReply) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode early reply for %s: %w", e.CorrelationID, err)
	}
	return append([]byte{recordV1}, b...), nil
}

// UnmarshalEarly decodes a stored early reply.
func UnmarshalEarly(b []byte) (EarlyReply, error) {
	var e EarlyReply
	if err := unmarshalRecord(b, &e); err != nil {
		return EarlyReply{}, err
	}
	if err := e.Ref().Validate(); err != nil {
		return EarlyReply{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return e, nil
}

func unmarshalRecord(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if b[0] != recordV1 {
		return fmt.Errorf("%w: unknown record version %d", ErrCorrupt, b[0])
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// MarshalReply encodes a reply that a backend stores apart from its
// correlation's record (accepted or late), in the binary encoding.
func MarshalReply(r Reply) ([]byte, error) {
	e := &enc{b: []byte{recordV2}}
	e.reply(r)
	return e.b, nil
}

// UnmarshalReply decodes a reply stored apart. Any problem is reported as an
// error wrapping ErrCorrupt; it never panics.
func UnmarshalReply(b []byte) (Reply, error) {
	if len(b) == 0 || b[0] != recordV2 {
		return Reply{}, fmt.Errorf("%w: reply: unknown encoding", ErrCorrupt)
	}
	d := &dec{b: b[1:]}
	r := d.reply()
	if d.err == nil && d.off != len(d.b) {
		d.fail("bytes after the reply")
	}
	return r, d.err
}

// MarshalEvent encodes a timeline event that a backend stores apart from
// its correlation's record.
func MarshalEvent(ev TimelineEvent) []byte {
	e := &enc{b: []byte{recordV2}}
	e.event(ev)
	return e.b
}

// UnmarshalEvent decodes a timeline event stored apart. Any problem is
// reported as an error wrapping ErrCorrupt; it never panics.
func UnmarshalEvent(b []byte) (TimelineEvent, error) {
	if len(b) == 0 || b[0] != recordV2 {
		return TimelineEvent{}, fmt.Errorf("%w: timeline event: unknown encoding", ErrCorrupt)
	}
	d := &dec{b: b[1:]}
	ev := d.event()
	if d.err == nil && d.off != len(d.b) {
		d.fail("bytes after the event")
	}
	return ev, d.err
}
