package redisstore

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The scripts, each documented (KEYS, ARGV, return) at the top of its file
// in lua/. redis.Script runs EVALSHA and falls back to EVAL when the server
// does not have the script yet (a restart, a failover, a new cluster node).
var (
	//go:embed lua/ops.lua
	opsLua string
	//go:embed lua/create.lua
	createLua string
	//go:embed lua/update.lua
	updateLua string
	//go:embed lua/buffer.lua
	bufferLua string
	//go:embed lua/drop_early.lua
	dropEarlyLua string
	//go:embed lua/quarantine.lua
	quarantineLua string
	//go:embed lua/unindex.lua
	unindexLua string
	//go:embed lua/claim_idem.lua
	claimIdemLua string
	//go:embed lua/unmap_idem.lua
	unmapIdemLua string
	//go:embed lua/upgrade_record.lua
	upgradeRecordLua string
	//go:embed lua/upgrade_lock.lua
	upgradeLockLua string
)

var (
	scriptCreate     = redis.NewScript(opsLua + createLua)
	scriptUpdate     = redis.NewScript(opsLua + updateLua)
	scriptBuffer     = redis.NewScript(bufferLua)
	scriptDropEarly  = redis.NewScript(dropEarlyLua)
	scriptQuarantine = redis.NewScript(quarantineLua)
	scriptUnindex    = redis.NewScript(unindexLua)
	scriptClaimIdem  = redis.NewScript(claimIdemLua)
	scriptUnmapIdem  = redis.NewScript(unmapIdemLua)

	scriptUpgradeRecord = redis.NewScript(upgradeRecordLua)
	scriptUpgradeLock   = redis.NewScript(upgradeLockLua)
)
