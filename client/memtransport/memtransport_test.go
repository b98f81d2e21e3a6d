package memtransport_test

import (
	"sync"
	"testing"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/client/transporttest"
)

// The transport suite: every transport a test makes is the same in-process
// broker (memtransport has no groups: all receivers of an address share it).
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	brokers := map[*testing.T]*memtransport.Transport{}
	transporttest.Run(t, func(t *testing.T, group string) client.Transport {
		mu.Lock()
		defer mu.Unlock()
		tr := brokers[t]
		if tr == nil {
			tr = memtransport.New()
			brokers[t] = tr
			t.Cleanup(func() { tr.Close() })
		}
		return tr
	})
}
