package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

// The repro of reuse-1: a token of a purged registration must not complete
// the next registration of the same id.
func TestReplyTokenDiesWithItsRegistration(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	first := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "reuse-1", "timeout": "1h"}), http.StatusCreated)
	old := first.str("reply_token")
	e.want(e.do("POST", "/v1/correlations/reuse-1/cancel", "", nil), http.StatusOK)
	// Decided: the token still names its registration, and its reply is late.
	late := e.want(e.do("POST", "/v1/replies/"+old, "", obj{"body": "late"}), http.StatusConflict)
	if late.str("status") != "late" {
		t.Errorf("reply to a decided registration: %s", late.raw)
	}
	e.clock.Add(time.Minute)
	if n, err := e.st.Purge(ctx, e.clock.Now(), 10); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	// Purged: 410.
	e.wantError(e.do("POST", "/v1/replies/"+old, "", obj{"body": "x"}), http.StatusGone, "token")
	second := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "reuse-1", "timeout": "1h"}), http.StatusCreated)
	fresh := second.str("reply_token")
	if fresh == old {
		t.Fatal("the second registration got the first one's token")
	}
	// Registered again: the old token is still 410, and delivers nothing.
	e.wantError(e.do("POST", "/v1/replies/"+old, "", obj{"body": "x"}), http.StatusGone, "token")
	g := e.want(e.do("GET", "/v1/correlations/reuse-1", "", nil), http.StatusOK)
	if g.str("state") != "pending" || len(g.field("replies").([]any)) != 0 {
		t.Fatalf("the old token reached the new registration: %s", g.raw)
	}
	e.want(e.do("POST", "/v1/replies/"+fresh, "", obj{"body": "ok"}), http.StatusOK)
}

// The review's race: the registration of a token goes away (purged, and
// perhaps registered again) just before its reply is written. The reply
// must neither complete the new registration nor stay as an early reply
// that a later registration picks up.
func TestReplyTokenRaceWithPurge(t *testing.T) {
	for _, again := range []bool{false, true} {
		t.Run(map[bool]string{false: "Purged", true: "RegisteredAgain"}[again], func(t *testing.T) {
			e := newEnv(t, envOpts{})
			ctx := context.Background()
			ref := store.RefOf("race-1")
			old := e.want(e.do("POST", "/v1/correlations", "", obj{"id": ref.ID, "timeout": "1h"}), http.StatusCreated).str("reply_token")
			first, err := e.st.Store.Get(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			// Between the token's check and the write, as another process
			// would: decide, purge, and perhaps register the ref again.
			hooked := make(chan error, 1)
			e.st.onDeliver(func(r store.Ref) {
				e.st.onDeliver(nil)
				hooked <- func() error {
					if _, err := e.st.Store.Cancel(ctx, ref, ""); err != nil {
						return err
					}
					e.clock.Add(time.Minute)
					if n, err := e.st.Store.Purge(ctx, e.clock.Now(), 10); err != nil || n != 1 {
						return fmt.Errorf("purge: %d, %v", n, err)
					}
					if again {
						if _, err := e.st.Store.Register(ctx, &store.Correlation{ID: ref.ID, Timeout: time.Hour}); err != nil {
							return err
						}
					}
					return nil
				}()
			})
			e.wantError(e.do("POST", "/v1/replies/"+old, "", obj{"body": "old"}), http.StatusGone, "token")
			select {
			case err := <-hooked:
				if err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatal("the reply was not delivered through the store")
			}
			if st, err := e.st.Store.Stats(ctx, ""); err != nil || st.EarlyReplies != 0 {
				t.Fatalf("the old token's reply was buffered: %+v, %v", st, err)
			}
			if !again {
				res, err := e.st.Store.Register(ctx, &store.Correlation{ID: ref.ID, Timeout: time.Hour})
				if err != nil || !res.Created {
					t.Fatalf("register again: %+v, %v", res, err)
				}
				if res.EarlyApplied != 0 {
					t.Fatalf("the old token's reply was applied to the next registration: %+v", res)
				}
			}
			second, err := e.st.Store.Get(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if second.State != store.StatePending || len(second.Replies) != 0 || len(second.Late) != 0 {
				t.Fatalf("the old token reached the new registration: %+v", second)
			}
			if second.Nonce == first.Nonce {
				t.Fatal("the new registration has the old one's nonce")
			}
			// The old token stays gone; the new registration's own works.
			e.wantError(e.do("POST", "/v1/replies/"+old, "", obj{"body": "old"}), http.StatusGone, "token")
			fresh := e.want(e.do("POST", "/v1/correlations/"+ref.ID+"/extend", "", obj{"timeout": "1h"}), http.StatusOK).str("reply_token")
			if fresh == "" || fresh == old {
				t.Fatalf("token of the second registration: %q", fresh)
			}
			if d := e.want(e.do("POST", "/v1/replies/"+fresh, "", obj{"body": "new"}), http.StatusOK); d.str("status") != "completed" {
				t.Fatalf("the new token's reply: %s", d.raw)
			}
		})
	}
}

func TestReplyTokenIsBoundToItsNamespace(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	ta := e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "x", "namespace": "team-a", "timeout": "1h"}), http.StatusCreated).str("reply_token")
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "x", "namespace": "team-b", "timeout": "1h"}), http.StatusCreated)

	// a's token with its namespace rewritten to team-b (same length).
	raw, err := base64.RawURLEncoding.DecodeString(ta)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(raw), "team-a", "team-b", 1)
	e.wantError(e.do("POST", "/v1/replies/"+base64.RawURLEncoding.EncodeToString([]byte(forged)), "", obj{"body": 1}), http.StatusUnauthorized, "token")

	d := e.want(e.do("POST", "/v1/replies/"+ta, "", obj{"body": 1}), http.StatusOK)
	if d.str("correlation.namespace") != "team-a" || d.str("status") != "completed" {
		t.Fatalf("deliver with a's token: %s", d.raw)
	}
	b := e.want(e.do("GET", "/v1/correlations/x?namespace=team-b", adminToken, nil), http.StatusOK)
	if b.str("state") != "pending" {
		t.Errorf("a's token touched team-b/x: %s", b.raw)
	}
}

// A heartbeat may carry a correlation past the deadline it had when its
// token was issued: the token has no expiry of its own.
func TestReplyTokenOutlivesItsFirstDeadline(t *testing.T) {
	e := newEnv(t, envOpts{})
	token := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "slow", "timeout": "1h"}), http.StatusCreated).str("reply_token")
	x := e.want(e.do("POST", "/v1/correlations/slow/extend", "", obj{"timeout": "72h"}), http.StatusOK)
	if x.str("reply_token") != token {
		t.Errorf("extend answered another token")
	}
	e.clock.Add(48 * time.Hour)
	d := e.want(e.do("POST", "/v1/replies/"+token, "", obj{"body": "done"}), http.StatusOK)
	if d.str("status") != "completed" {
		t.Errorf("deliver after the first deadline: %s", d.raw)
	}
}

// Without a secret file the store's secret signs: tokens survive a restart
// and verify on every server sharing the store.
func TestReplyTokensSurviveRestartAndReplicas(t *testing.T) {
	e := newEnv(t, envOpts{})
	ta := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "a", "timeout": "1h"}), http.StatusCreated).str("reply_token")
	tb := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "b", "timeout": "1h"}), http.StatusCreated).str("reply_token")

	// A second server on the same store (a replica).
	replica, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := replica.replyTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := tokens.Verify(tb); err != nil || tok.Ref != store.RefOf("b") {
		t.Errorf("the replica does not verify the token: %+v, %v", tok, err)
	}
	replica.Close() // before the restart swaps the store under it

	e.restart()
	d := e.want(e.do("POST", "/v1/replies/"+ta, "", obj{"body": 1}), http.StatusOK)
	if d.str("status") != "completed" {
		t.Errorf("after a restart: %s", d.raw)
	}
}

func TestReplyTokenResponderSeesNoPrivateFields(t *testing.T) {
	e := newEnv(t, envOpts{})
	reg := obj{"id": "p", "pattern": "gather", "expect": 2, "owner": "billing", "labels": obj{"k": "v"}, "idempotency_key": "ik",
		"callback": obj{"handler": "h", "data": obj{"secret": 1}}}
	token := e.want(e.do("POST", "/v1/correlations", "", reg), http.StatusCreated).str("reply_token")
	e.want(e.do("POST", "/v1/correlations/p/replies", "", obj{"from": "other", "body": obj{"theirs": true}}), http.StatusOK)
	d := e.want(e.do("POST", "/v1/replies/"+token, "", obj{"from": "me", "body": 1}), http.StatusOK)
	for _, k := range []string{"callback", "labels", "owner", "idempotency_key", "replies", "events"} {
		if d.field("correlation."+k) != nil {
			t.Errorf("a token holder is shown %s: %s", k, d.raw)
		}
	}
	if d.field("correlation.reply_count") != float64(2) || d.str("correlation.state") != "completed" {
		t.Errorf("answer: %s", d.raw)
	}
}

const urlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// Only the canonical encoding of a genuine token is accepted.
func TestReplyTokenNonCanonicalEncodings(t *testing.T) {
	e := newEnv(t, envOpts{})
	var tokens []string
	for _, id := range []string{"a", "bb", "ccc", "dddd"} { // lengths that leave 0, 2 and 4 spare bits
		tokens = append(tokens, e.want(e.do("POST", "/v1/correlations", "", obj{"id": id, "timeout": "1h"}), http.StatusCreated).str("reply_token"))
	}
	rt, err := e.api.replyTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	variants := func(tok string) []string {
		var out []string
		for i := 0; i <= len(tok); i += 3 {
			for _, ins := range []string{"\r", "\n", "\r\n", "=", " ", "."} {
				out = append(out, tok[:i]+ins+tok[i:])
			}
		}
		out = append(out, tok+"==", tok+"=", strings.NewReplacer("-", "+", "_", "/").Replace(tok), tok[:len(tok)-1])
		// The same bytes with spare bits set in the last character.
		last := strings.IndexByte(urlAlphabet, tok[len(tok)-1])
		for bit := 0; bit < 4; bit++ {
			v := tok[:len(tok)-1] + string(urlAlphabet[last^(1<<bit)])
			if b1, e1 := base64.RawURLEncoding.DecodeString(v); e1 == nil {
				b0, _ := base64.RawURLEncoding.DecodeString(tok)
				if string(b1) == string(b0) {
					out = append(out, v)
				}
			}
		}
		return out
	}
	n, spare := 0, 0
	for _, tok := range tokens {
		if _, err := rt.Verify(tok); err != nil {
			t.Fatalf("the genuine token %q: %v", tok, err)
		}
		for _, v := range variants(tok) {
			if v == tok {
				continue // the alphabet swap of a token with neither - nor _
			}
			n++
			if len(v) == len(tok) && strings.Trim(v, urlAlphabet) == "" {
				spare++
			}
			if got, err := rt.Verify(v); err == nil {
				t.Errorf("non-canonical %q of %q accepted as %+v", v, tok, got)
			}
		}
	}
	if spare == 0 {
		t.Error("no spare-bit variant was tried")
	}
	// Over HTTP too: 401, nothing delivered.
	for i, v := range variants(tokens[1]) {
		if i%5 != 0 || v == tokens[1] {
			continue
		}
		r := e.do("POST", "/v1/replies/"+url.PathEscape(v), "", obj{"body": i})
		if r.code != http.StatusUnauthorized && r.code != http.StatusNotFound {
			t.Errorf("%q: %d %s", v, r.code, r.raw)
		}
	}
	if g := e.want(e.do("GET", "/v1/correlations/bb", "", nil), http.StatusOK); g.str("state") != "pending" {
		t.Fatalf("a non-canonical token delivered: %s", g.raw)
	}
	t.Logf("%d non-canonical encodings refused", n)
}

func TestReplyTokenForgeries(t *testing.T) {
	e := newEnv(t, envOpts{})
	ta := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "a", "pattern": "gather", "expect": 1000, "timeout": "1h"}), http.StatusCreated).str("reply_token")
	tb := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "b", "namespace": "team-b", "timeout": "1h"}), http.StatusCreated).str("reply_token")
	rt, err := e.api.replyTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := base64.RawURLEncoding.DecodeString(ta)
	rb, _ := base64.RawURLEncoding.DecodeString(tb)
	rng := rand.New(rand.NewPCG(1, 2))
	forge := func(i int) string {
		x := append([]byte(nil), ra...)
		switch i % 5 {
		case 0: // flip one bit anywhere
			j := rng.IntN(len(x))
			x[j] ^= 1 << rng.IntN(8)
		case 1: // b's payload with a's MAC
			x = append(append([]byte(nil), rb[:len(rb)-macLen]...), ra[len(ra)-macLen:]...)
		case 2: // another nonce
			x[len(x)-macLen-1-rng.IntN(8)]++
		case 3: // random bytes of the right length
			for j := range x {
				x[j] = byte(rng.Uint32())
			}
		case 4: // cut
			x = x[:rng.IntN(len(x))]
		}
		return base64.RawURLEncoding.EncodeToString(x)
	}
	for i := range 10000 {
		if f := forge(i); f != ta {
			if tok, err := rt.Verify(f); err == nil {
				t.Fatalf("forged token %d accepted for %+v", i, tok)
			}
		}
	}
	for i := range 200 {
		f := forge(i)
		if f == "" {
			continue // no route
		}
		r := e.do("POST", "/v1/replies/"+f, "", obj{"from": "x", "body": i})
		if r.code != http.StatusUnauthorized {
			t.Fatalf("forged token %d: %d %s", i, r.code, r.raw)
		}
	}
	if g := e.want(e.do("GET", "/v1/correlations/a", "", nil), http.StatusOK); len(g.field("replies").([]any)) != 0 {
		t.Fatalf("forged tokens delivered: %s", g.raw)
	}
}

func TestReplySecretRotation(t *testing.T) {
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 40)
	parse := func(file string) *ReplyTokens {
		t.Helper()
		rt, err := ParseReplySecrets(strings.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	ref := store.Ref{Namespace: "ns", ID: "id"}
	before := parse("# the secret\n" + oldKey + "\n")
	tok := before.Sign(ref, "nonce-1")
	during := parse(newKey + "\n\n  " + oldKey + "  \n")
	if got, err := during.Verify(tok); err != nil || got.Ref != ref || got.Nonce != "nonce-1" {
		t.Errorf("a token of the old secret during rotation: %+v, %v", got, err)
	}
	if during.Sign(ref, "nonce-1") == tok {
		t.Error("during rotation the old secret still signs")
	}
	after := parse(newKey)
	if _, err := after.Verify(tok); err == nil {
		t.Error("the dropped secret still verifies")
	}
	for _, bad := range []string{"", "# only a comment\n", "short\n", oldKey + "\nshort"} {
		if _, err := ParseReplySecrets(strings.NewReader(bad)); err == nil {
			t.Errorf("secret file %q accepted", bad)
		}
	}
}

// Tokens signed before nonces (schema 1) verify, and are bound to a
// registration without a nonce only.
func TestLegacyReplyToken(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	rt, err := NewReplyTokens(key)
	if err != nil {
		t.Fatal(err)
	}
	p := []byte{legacyTokenVersion}
	p = binary.BigEndian.AppendUint64(p, uint64(epoch.Unix()))
	p = append(p, byte(len("default")))
	p = append(p, "default"...)
	p = append(p, "old-1"...)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("corrstore reply token\x00"))
	m.Write(p)
	legacy := base64.RawURLEncoding.EncodeToString(m.Sum(p))
	tok, err := rt.Verify(legacy)
	if err != nil || !tok.Legacy || tok.Ref != store.RefOf("old-1") {
		t.Fatalf("legacy token: %+v, %v", tok, err)
	}
	if !tok.Matches(&store.Correlation{ID: "old-1", Namespace: "default"}) {
		t.Error("a legacy token does not match its registration of schema 1")
	}
	if tok.Matches(&store.Correlation{ID: "old-1", Namespace: "default", Nonce: store.NewNonce()}) {
		t.Error("a legacy token matches a registration made since")
	}
}
