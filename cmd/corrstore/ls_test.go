package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
)

func lsIDs(t *testing.T, out string) []string {
	t.Helper()
	var v wire.ListResponse
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	ids := []string{}
	for _, it := range v.Items {
		ids = append(ids, it.ID)
	}
	return ids
}

func TestLs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"gone-1", "dead-1", "done-1", "pend-2", "pend-1"}},
		{[]string{"--state", "pending"}, []string{"pend-2", "pend-1"}},
		{[]string{"--namespace", "team-a"}, []string{"pend-2"}},
		{[]string{"-n", "default", "--state", "pending"}, []string{"pend-1"}},
		{[]string{"--owner", "svc-a"}, []string{"pend-1"}},
		{[]string{"--destination", "payments", "--order", "oldest"}, []string{"pend-1", "done-1", "dead-1"}},
		{[]string{"--label", "wf=w2"}, []string{"pend-2"}},
		{[]string{"--dispatch", "dead"}, []string{"dead-1"}},
		{[]string{"--handler", "resume-order"}, []string{"done-1", "pend-1"}},
		{[]string{"--older-than", "1h"}, []string{}},
		{[]string{"--limit", "2", "--all"}, []string{"gone-1", "dead-1", "done-1", "pend-2", "pend-1"}},
		{[]string{"--limit", "2"}, []string{"gone-1", "dead-1"}},
	} {
		outs := f.both(append([]string{"ls", "-o", "json"}, tc.args...)...)
		for _, out := range outs {
			require.Equal(t, tc.want, lsIDs(t, out), "%v", tc.args)
		}
	}
	f.now = time.Now()
	outs := f.both("ls", "--state", "pending")
	require.Contains(t, outs[0], "ID")
	require.Regexp(t, `pend-1 +default +pending`, outs[0])
	require.Contains(t, outs[0], "2 correlations")
	require.Equal(t, outs[0], outs[1], "same table from server and store")
	for _, out := range f.both("ls", "--state", "completed") {
		require.Regexp(t, `done-1 +default +completed +\S+ +- +payments +resume-order +1 +pending\n`, out, "REPLIES counts done-1's reply")
	}
	// Paging with next_cursor, the same on a server and a store.
	for _, where := range [][]string{{"--server", f.srv.URL}, {"--store", f.storeURL()}} {
		var ids []string
		args := append([]string{"ls", "-o", "json", "--limit", "2"}, where...)
		for cursor := ""; ; {
			out, _, err := f.run(append(args, "--cursor", cursor)...)
			require.NoError(t, err)
			var page wire.ListResponse
			require.NoError(t, json.Unmarshal([]byte(out), &page))
			require.LessOrEqual(t, len(page.Items), 2)
			for _, it := range page.Items {
				ids = append(ids, it.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		require.Equal(t, []string{"gone-1", "dead-1", "done-1", "pend-2", "pend-1"}, ids, "%v", where)
	}
	for _, where := range []string{"--server", "--store"} {
		url := map[string]string{"--server": f.srv.URL, "--store": f.storeURL()}[where]
		_, _, err := f.run("ls", "--cursor", "not-a-cursor", where, url)
		require.EqualError(t, err, "ls: --cursor: is not a cursor this store returned", where)
	}

	out, _, err := f.run("ls", "--limit", "2", "--server", f.srv.URL)
	require.NoError(t, err)
	require.Contains(t, out, "2 shown; more match")
}
