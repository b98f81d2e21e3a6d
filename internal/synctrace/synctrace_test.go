package synctrace

import (
	"strings"
	"testing"
)

// A trace in strace -f's own format, cut down: the file opened twice (the
// first descriptor closed, its number then reused by another file), a page
// whose bytes hold a quote and ") = 3", a sync that another thread's lines
// interrupt, and one registration at each stage when it is acknowledged;
// one of them while the sync that would make it durable is still running.
const sample = `100  openat(AT_FDCWD, "/d/x.db", O_RDONLY|O_CLOEXEC) = 3
100  close(3)                          = 0
100  openat(AT_FDCWD, "/d/x.db", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 3
100  openat(AT_FDCWD, "/d/other", O_RDWR|O_CLOEXEC) = 4
101  pwrite64(3, "\0\0\1synctrace-0000001\"q\" ) = 3 synctrace-0000002", 4096, 8192) = 4096
101  fdatasync(3)                      = 0
101  pwrite64(3, "\0\0meta", 4096, 4096 <unfinished ...>
102  write(1, "synctrace-0000009\n", 18) = 18
101  <... pwrite64 resumed>)           = 4096
101  fdatasync(3 <unfinished ...>
102  write(1, "synctrace-0000002\n", 18 <unfinished ...>
101  <... fdatasync resumed>)          = 0
102  <... write resumed>)              = 18
103  write(1, "synctrace-0000001\n", 18) = 18
101  pwrite64(3, "synctrace-0000003", 4096, 12288) = 4096
101  fdatasync(4)                      = 0
101  pwrite64(3, "meta", 4096, 0)     = 4096
101  fsync(4)                          = 0
102  write(1, "synctrace-0000003\n", 18) = 18
101  pwrite64(3, "synctrace-0000004", 4096, 16384) = 4096
102  write(1, "synctrace-0000004\n", 18) = 18
`

func TestAnalyse(t *testing.T) {
	r := analyse(sample, "/d/x.db", 4096)
	if r.opened != 2 || r.syncs != 2 {
		t.Errorf("opened %d, synced %d: want 2, 2", r.opened, r.syncs)
	}
	if got, want := strings.Join(r.acked, " "), "synctrace-0000009 synctrace-0000002 synctrace-0000001 synctrace-0000003 synctrace-0000004"; got != want {
		t.Errorf("acknowledged %s, want %s", got, want)
	}
	want := []string{
		"synctrace-0000009: acknowledged at trace line 8, no page holding it was written before",
		"synctrace-0000002: page written at trace line 5, meta page at 7, acknowledged at 11 with no fdatasync/fsync of the file in between",
		"synctrace-0000003: page written at trace line 15, meta page at 17, acknowledged at 19 with no fdatasync/fsync of the file in between",
		"synctrace-0000004: page written at trace line 20, acknowledged at 21 before the commit's meta page was written",
	}
	if len(r.bad) != len(want) {
		t.Fatalf("found %d too early, want %d:\n%s", len(r.bad), len(want), strings.Join(r.bad, "\n"))
	}
	for i := range want {
		if strings.TrimSpace(r.bad[i]) != want[i] {
			t.Errorf("finding %d:\n got %s\nwant %s", i, strings.TrimSpace(r.bad[i]), want[i])
		}
	}
}
