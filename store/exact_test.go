package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// Whatever arrives at or after the deadline finds the deadline outcome
// decided, exactly as ExpireDue would decide it; 1µs before, it is in time.
func TestExactDeadline(t *testing.T) {
	regs := map[string]*store.Correlation{
		"single":          {Timeout: time.Minute},
		"optional":        {Timeout: time.Minute, Optional: true},
		"gather-quorum":   {Timeout: time.Minute, Pattern: store.PatternGather, Expect: 3, Quorum: 1},
		"gather-noquorum": {Timeout: time.Minute, Pattern: store.PatternGather, Expect: 3, Quorum: 2},
	}
	steps := map[string]func(c *store.Correlation, at time.Time) error{
		"deliver": func(c *store.Correlation, at time.Time) error {
			_, err := c.ApplyReply(store.Reply{ID: "r-late", From: "late"}, at, lim)
			return err
		},
		"extend": func(c *store.Correlation, at time.Time) error {
			_, err := c.ApplyExtend(at, at.Add(time.Hour), lim)
			return err
		},
		"cancel": func(c *store.Correlation, at time.Time) error {
			_, err := c.ApplyCancel(at, "too late", lim)
			return err
		},
	}
	for name, reg := range regs {
		for sname, step := range steps {
			for _, after := range []time.Duration{0, time.Microsecond, time.Hour} {
				c := prepared(t, reg)
				if c.Pattern == store.PatternGather {
					apply(t, c, store.Reply{From: "first"}, t0.Add(time.Second), lim)
				}
				want := c.Clone()
				at := c.Deadline.Add(after)
				want.DecideAtDeadline(at, store.ReasonDeadline, lim)

				version := c.Version
				err := step(c, at)
				if sname == "deliver" {
					require.NoError(t, err)
					require.Equal(t, 1, c.LateCount, "%s %s +%s: the reply is late", name, sname, after)
				} else {
					require.ErrorIs(t, err, store.ErrNotPending, "%s %s +%s", name, sname, after)
					require.Contains(t, err.Error(), "deadline")
				}
				require.Greater(t, c.Version, version, "the settled record changed and must be stored")
				require.Equal(t, *want.Outcome, *c.Outcome, "%s %s +%s: the outcome ExpireDue would decide", name, sname, after)
				require.Equal(t, store.ReasonDeadline, c.Outcome.Reason)
			}
		}
	}
}

func TestInTimeOneMicrosecondBefore(t *testing.T) {
	c := prepared(t, &store.Correlation{Timeout: time.Minute})
	require.Equal(t, store.DeliverCompleted, apply(t, c, store.Reply{ID: "r"}, c.Deadline.Add(-time.Microsecond), lim))

	c = prepared(t, &store.Correlation{Timeout: time.Minute})
	dup, err := c.ApplyExtend(c.Deadline.Add(-time.Microsecond), c.Deadline.Add(time.Minute), lim)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.StatePending, c.State)
}

// A duplicate of an accepted reply stays a duplicate after the deadline.
func TestDuplicateAfterDeadline(t *testing.T) {
	c := prepared(t, &store.Correlation{Timeout: time.Minute, Pattern: store.PatternGather, Expect: 2})
	apply(t, c, store.Reply{From: "a"}, t0, lim)
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{From: "a"}, c.Deadline.Add(time.Second), lim))
}

func TestSettleDue(t *testing.T) {
	c := prepared(t, &store.Correlation{Timeout: time.Minute})
	require.False(t, c.Due(c.Deadline.Add(-1)))
	require.False(t, c.SettleDue(c.Deadline.Add(-1), lim))
	require.True(t, c.Due(c.Deadline))
	require.True(t, c.SettleDue(c.Deadline, lim))
	require.Equal(t, store.StateTimedOut, c.State)
	require.False(t, c.Due(c.Deadline.Add(time.Hour)), "decided: nothing is due")
	require.False(t, c.SettleDue(c.Deadline.Add(time.Hour), lim))
}

func TestMaxRecordBytes(t *testing.T) {
	l := lim
	l.MaxBodyBytes, l.MaxRecordBytes = 10, 25
	c := prepared(t, &store.Correlation{Timeout: time.Minute, Pattern: store.PatternGather, Expect: 5})
	for _, from := range []string{"a", "b"} {
		apply(t, c, store.Reply{From: from, Body: []byte("0123456789")}, t0, l)
	}
	require.Equal(t, 20, c.Held.Bytes)
	before := c.Clone()
	_, err := c.ApplyReply(store.Reply{From: "c", Body: []byte("0123456")}, t0, l)
	require.ErrorIs(t, err, store.ErrTooLarge)
	var fe *store.FieldError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "reply.body", fe.Field)
	require.Contains(t, fe.Reason, "max_record_bytes")
	require.Equal(t, before, c, "a refused reply changes nothing")
	require.Equal(t, store.DeliverAccepted, apply(t, c, store.Reply{From: "c", Body: []byte("01234")}, t0, l), "up to the limit is fine")
}

func TestNameLikeFieldsRefuseControlCharacters(t *testing.T) {
	for field, set := range map[string]func(c *store.Correlation, v string){
		"destination":      func(c *store.Correlation, v string) { c.Destination = v },
		"reply_to":         func(c *store.Correlation, v string) { c.ReplyTo = v },
		"owner":            func(c *store.Correlation, v string) { c.Owner = v },
		"callback.handler": func(c *store.Correlation, v string) { c.Callback.Handler = v },
		"labels":           func(c *store.Correlation, v string) { c.Labels = map[string]string{v: "x"} },
		"labels.k":         func(c *store.Correlation, v string) { c.Labels = map[string]string{"k": v} },
	} {
		for _, bad := range []string{"a\x1b[2Jb", "line\nbreak", "cr\r", "nul\x00", "del\x7f", "c1\u0085", "\xff\xfe"} {
			c := &store.Correlation{Timeout: time.Minute}
			set(c, bad)
			_, err := store.Prepare(c, t0, lim)
			var fe *store.FieldError
			require.True(t, errors.As(err, &fe), "%s=%q: %v", field, bad, err)
			require.ErrorIs(t, err, store.ErrInvalid)
			require.Equal(t, field, fe.Field, "%q", bad)
		}
	}
	for _, bad := range []string{"a\nb", "\x1b]0;x\x07", "\xc3"} {
		require.ErrorIs(t, store.ValidateReason(bad), store.ErrInvalid, "%q", bad)
		require.ErrorIs(t, store.ValidateReply(store.Reply{From: bad}, lim), store.ErrInvalid, "%q", bad)
		require.ErrorIs(t, store.ValidateReply(store.Reply{ID: bad}, lim), store.ErrInvalid, "%q", bad)
	}
	require.ErrorIs(t, store.ValidateReply(store.Reply{Error: "\xff"}, lim), store.ErrInvalid)
	require.NoError(t, store.ValidateReply(store.Reply{Error: "stack:\n\tat x"}, lim), "an error text may span lines")
	require.NoError(t, store.ValidateReason("Zahlung fehlgeschlagen — 支払い"), "any printable UTF-8")
}

func TestNonce(t *testing.T) {
	a := prepared(t, &store.Correlation{ID: "n", Timeout: time.Minute})
	b := prepared(t, &store.Correlation{ID: "n", Timeout: time.Minute})
	require.Len(t, a.Nonce, 22)
	require.NotEqual(t, a.Nonce, b.Nonce, "each registration draws its own")
	require.Equal(t, a.Fingerprint, b.Fingerprint, "the nonce is not content")
}

func TestRef(t *testing.T) {
	r := store.Ref{Namespace: "tenant-a", ID: "order:42"}
	require.Equal(t, "tenant-a/order:42", r.String())
	got, err := store.ParseRef(r.String())
	require.NoError(t, err)
	require.Equal(t, r, got)
	require.Equal(t, "default/x", store.Ref{ID: "x"}.String())
	require.Equal(t, store.RefOf("x"), store.Ref{ID: "x"}.Norm())
	for _, bad := range []string{"", "x", "/x", "ns/", "NS/x", "ns/a/b", "ns/a b", strings.Repeat("a", 65) + "/x"} {
		_, err := store.ParseRef(bad)
		require.ErrorIs(t, err, store.ErrInvalid, "%q", bad)
	}
	require.ErrorIs(t, store.NotFound(store.Ref{ID: "x"}), store.ErrNotFound)
	require.Contains(t, store.NotFound(store.Ref{ID: "x"}).Error(), "default/x")
}

func TestDotIDsRefused(t *testing.T) {
	for _, id := range []string{".", ".."} {
		_, err := store.Prepare(&store.Correlation{ID: id}, t0, lim)
		require.ErrorIs(t, err, store.ErrInvalid, "%q", id)
		require.NoError(t, store.ValidateID(id), "a record stored before the rule stays addressable")
	}
	for _, id := range []string{"...", ".a"} {
		_, err := store.Prepare(&store.Correlation{ID: id}, t0, lim)
		require.NoError(t, err, "only the path segments are refused")
	}
}

func TestValidateSecretName(t *testing.T) {
	require.NoError(t, store.ValidateSecretName("reply-token"))
	require.ErrorIs(t, store.ValidateSecretName(""), store.ErrInvalid)
	require.ErrorIs(t, store.ValidateSecretName("Bad Name"), store.ErrInvalid)
}

func TestEventKinds(t *testing.T) {
	c := prepared(t, &store.Correlation{Timeout: time.Minute, Callback: store.Callback{Handler: "h"}})
	_, err := c.ApplyExtend(t0, t0.Add(time.Hour), lim)
	require.NoError(t, err)
	e := store.EventOf(c)
	require.Equal(t, store.ChangeExtended, e.Kind)
	require.True(t, e.Deadline.Equal(t0.Add(time.Hour)))
	require.Equal(t, store.Ref{Namespace: "default", ID: c.ID}, e.Ref())

	apply(t, c, store.Reply{ID: "r"}, t0, lim)
	require.Equal(t, store.ChangeOutcome, store.EventOf(c).Kind)
	require.True(t, c.ApplyClaim("i", t0, time.Minute, lim))
	require.Equal(t, store.ChangeDispatch, store.EventOf(c).Kind)
	require.Equal(t, store.DispatchPending, store.EventOf(c).Dispatch)
	apply(t, c, store.Reply{ID: "r2"}, t0.Add(time.Second), lim)
	require.Equal(t, store.ChangeLate, store.EventOf(c).Kind)

	// A late reply that found the deadline passed decided the outcome.
	c = prepared(t, &store.Correlation{Timeout: time.Minute})
	apply(t, c, store.Reply{ID: "r"}, c.Deadline, lim)
	require.Equal(t, store.ChangeOutcome, store.EventOf(c).Kind)
	// A registration completed by an early reply.
	c = prepared(t, &store.Correlation{Timeout: time.Minute})
	require.Equal(t, 1, c.ApplyEarly([]store.Reply{{ID: "e", ReceivedAt: t0.Add(-time.Second)}}, t0, lim))
	require.Equal(t, store.ChangeOutcome, store.EventOf(c).Kind)
}

// The ring of late replies is bounded in bytes as in count: a decided
// correlation's record stops growing whatever is sent to it afterwards.
func TestLateRingBoundedInBytes(t *testing.T) {
	l := lim
	l.MaxBodyBytes, l.MaxLateBytes, l.MaxLate = 100, 25, 16
	c := prepared(t, &store.Correlation{Timeout: time.Minute})
	apply(t, c, store.Reply{ID: "r"}, t0, l)
	body := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	for i, n := range []int{10, 10, 10} {
		require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{ID: fmt.Sprint("l", i), Body: body(n)}, t0, l))
	}
	require.Len(t, c.Late, 2, "the oldest went: 30 bytes would pass 25")
	require.Equal(t, "l1", c.Late[0].ID)

	require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{ID: "big", Body: body(26)}, t0, l))
	require.Len(t, c.Late, 2, "a body over max_late_bytes alone is counted, not kept")
	require.Equal(t, 4, c.LateCount)
	require.Contains(t, c.Events[len(c.Events)-1].Detail, "not kept")

	require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{ID: "fits", Body: body(25)}, t0, l))
	require.Len(t, c.Late, 1, "the ring makes room for one that fits")
	require.Equal(t, "fits", c.Late[0].ID)
	require.Equal(t, 5, c.LateCount)
}
