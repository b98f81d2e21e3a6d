//go:build !redis

package storeurl

import (
	"context"
	"fmt"

	"github.com/corrstore/corrstore/store"
)

// openRedis waits for the redisstore package.
func openRedis(_ context.Context, raw string, _ Options) (store.Store, error) {
	return nil, fmt.Errorf("--store %s: redis is not available in this build yet", Redact(raw))
}
