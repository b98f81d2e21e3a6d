package storetest_test

import (
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

var mutant = flag.String("mutant", "", "give the reference store this deliberate bug (TestMutants runs the suite so)")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openMem is the NewStore of the reference store.
func openMem(t *testing.T, cfg storetest.Config) store.Store {
	s, err := newMemStore(cfg.Clock, cfg.Limits)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMemStore(t *testing.T) {
	storetest.Run(t, openMem)
}

// mutants are backend bugs the suite must catch, each with a test that
// catches it.
var mutants = []struct{ bug, test string }{
	{"wall-clock", "Register/Created"},
	{"limits-ignored", "Deliver/Late"},
	{"close-noop", "Closed/EveryMethodAfterClose"},
	{"no-idempotency-index", "Register/IdempotencyKeyWithID"},
	{"register-overwrites", "Register/ExistingSameContent"},
	{"register-no-conflict", "Register/Conflict"},
	{"early-arrival-lost", "Deliver/EarlyApplied"},
	{"early-kept", "Deliver/EarlyApplied"},
	{"early-no-cap", "Deliver/EarlyCap"},
	{"late-not-saved", "Deliver/Late"},
	{"deliver-reapplies", "Repeat/DeliverAccepted"},
	{"expire-decided", "ExpireDue/SkipsDecided"},
	{"expire-strict", "ExpireDue/OnlyDue"},
	{"expire-no-limit", "ExpireDue/Limit"},
	{"claim-no-limit", "Dispatch/ClaimLimit"},
	{"claim-any-handler", "Dispatch/ClaimScope"},
	{"list-order-ignored", "List/Order"},
	{"list-offset-cursor", "List/PaginationConcurrentInserts"},
	{"stats-count-none", "List/Stats"},
	{"stats-bytes-no-late", "List/StatsBytes"},
	{"purge-any-dispatch", "List/Purge"},
	{"purge-inclusive", "List/Purge"},
	{"expire-silent", "ExpireDue/Events"},
	{"close-keeps-subscribers", "Closed/CloseEndsSubscriptions"},
	{"closed-validates-first", "Closed/InvalidArgumentsAfterClose"},
	{"ns-blind", "Namespaces/SameIDTwoCorrelations"},
	{"cursor-id-only", "Namespaces/ListAndCursors"},
	{"late-accepted", "Deadline/ReplyAtDeadline"},
	{"settle-not-saved", "Deadline/ExtendAtDeadline"},
	{"extend-silent", "Subscribe/EventKinds"},
	{"nonce-renewed", "Register/Nonce"},
	{"nonce-ignored", "Deliver/BoundToRegistration"},
	{"nonce-ignored", "Deliver/BoundNeverBuffered"},
	{"secret-per-call", "Secret/StableAndDistinct"},
}

// TestMutants is the suite's self-test: it runs suite tests, in a child
// process, on the reference store with one deliberate bug each, and requires
// them to fail.
func TestMutants(t *testing.T) {
	if *mutant != "" {
		t.Skip("this process is a mutant run")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, m := range mutants {
		t.Run(m.bug, func(t *testing.T) {
			t.Parallel()
			area, name, _ := strings.Cut(m.test, "/")
			cmd := exec.CommandContext(t.Context(), exe, "-test.count=1", "-mutant="+m.bug,
				"-test.run=^TestMemStore$/^"+area+"$/^"+name+"$")
			cmd.Env = append(os.Environ(), "CORRSTORE_STORETEST_WAIT=1s") // a mutant that publishes nothing fails sooner
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "the suite passed a store with the bug %q:\n%s", m.bug, out)
			require.Contains(t, string(out), "--- FAIL: TestMemStore/"+m.test+" ", "bug %q:\n%s", m.bug, out)
		})
	}
}
