package bolt_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// A listing of one namespace reads none of another's records, however many
// and large they are, in either order and across pages.
func TestListNamespaceReadsOnlyItsRecords(t *testing.T) {
	ctx := t.Context()
	clock := store.NewFakeClock(storetest.Epoch)
	s := open(t, bolt.Options{Clock: clock, NoSync: true})
	big := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	var want []string
	for i := range 60 {
		c := &store.Correlation{ID: fmt.Sprintf("b-%d", i), Namespace: "b", Timeout: time.Hour,
			Callback: store.Callback{Handler: "h", Data: big}}
		if i%12 == 0 {
			c = &store.Correlation{ID: fmt.Sprintf("a-%d", i), Namespace: "a", Timeout: time.Hour}
			want = append(want, "a/"+c.ID)
		}
		_, err := s.Register(ctx, c)
		require.NoError(t, err)
		clock.Add(time.Millisecond)
	}
	var loaded []string
	s.OnListLoad(func(ref string) { loaded = append(loaded, ref) })

	for _, order := range []store.Order{store.OldestFirst, store.NewestFirst} {
		loaded = nil
		var got []string
		for _, c := range storetest.ListAll(ctx, t, s, store.Filter{Namespace: "a", Limit: 2, Order: order}) {
			got = append(got, c.Ref().String())
		}
		exp := append([]string(nil), want...)
		if order == store.NewestFirst {
			slices.Reverse(exp)
		}
		require.Equal(t, exp, got, order)
		for _, ref := range loaded {
			require.True(t, strings.HasPrefix(ref, "a/"), "%s: read %s", order, ref)
		}
	}

	loaded = nil
	_, err := s.List(ctx, store.Filter{Limit: 10})
	require.NoError(t, err)
	require.Contains(t, loaded, "b/b-59", "a listing of every namespace does read b's (the hook sees reads)")
}
