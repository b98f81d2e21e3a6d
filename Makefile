# corrstore — make help lists the targets.
GO      ?= go
PKGS    ?= ./...
BENCHTIME ?= 2s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## run the service on the embedded bbolt default (./corrstore.db, 127.0.0.1:7411)
	$(GO) run ./cmd/corrstore serve

# -buildvcs=true: corrstore version reports the commit and a dirty tree even
# where the go env turns VCS stamping off.
.PHONY: build
build: ## build bin/corrstore (corrstore version reports its commit)
	$(GO) build -buildvcs=true -o bin/corrstore ./cmd/corrstore

# make test's two steps run side by side: most of each waits on fsyncs,
# round trips and child processes, so together they take little more than
# the longer one (docs/BENCHMARKS.md has the figures). Each step's output is
# printed whole when it ends; make fails if either does.
#
# Each step runs go test -json through internal/testreport, which prints
# what go test prints without -v, then the tests that were skipped and why
# (go test says why only with -v, and CI runs without it). Under make test
# the steps leave their skips in SKIPS_DIR and make test lists them all at
# its end. A test of a real server whose tool is missing fails under CI=true
# instead of skipping (testenv.SkipOrFail).
TESTREPORT ?= $(GO) run ./internal/testreport
SKIPS_DIR  ?=
skips_to    = $(if $(SKIPS_DIR),-skips $(SKIPS_DIR)/$@.json)

.PHONY: test
test: ## the CI command: test-race and test-norace side by side (Redis tests start their own redis-servers), then what they skipped and why
	@echo "make test: test-race and test-norace side by side; each prints its output when it ends, then the skipped tests are listed (20 s on a quiet 2-core machine, up to ~10 min on a loaded one)"
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(GO) build -o "$$d/testreport" ./internal/testreport && \
	{ $(MAKE) --no-print-directory -j2 --output-sync=target test-race test-norace SKIPS_DIR="$$d" TESTREPORT="$$d/testreport"; rc=$$?; \
	  "$$d/testreport" -summary "$$d/test-race.json" "$$d/test-norace.json" || rc=1; exit $$rc; }

.PHONY: check-openapi
check-openapi: ## lint docs/openapi.yaml (Redocly) and compile a client generated from it (openapi-typescript, tsc --strict); skipped without npm (~10 s, more on the first npm ci)
	tools/openapi/check.sh

.PHONY: test-race
test-race: ## make test's first step: every test of every package with the race detector
	$(TESTREPORT) -step $@ $(skips_to) -- $(GO) test -json -race -count=1 -timeout 25m $(PKGS)

# The subtest pattern applies to every test the first pattern picks: owner
# is the subtest of TestCluster.
.PHONY: test-norace
test-norace: ## make test's second step: what -race makes too slow (bolt crash loop and 5,000 exactly-once, Redis conformance on three engines, retry proxy, harness clusters)
	CORRSTORE_CRASH_KILLS=20 $(TESTREPORT) -step $@ $(skips_to) -- $(GO) test -json -count=1 -timeout 20m -run '^(TestCrash|TestCrashLoop|TestExactlyOnceBolt|TestMiniredis|TestRealServer|TestRealCluster|TestRetryDroppedReplies|TestCluster|TestSharedCluster)$$/^(Conformance|ExactlyOnce|ShardsSpreadOverMasters|StrictRefusesEverysec|TwoStores|Upgrade|owner)$$' ./bolt/ ./reaper/ ./redisstore/ ./redisstore/redistest/

.PHONY: test-durability
test-durability: ## under strace, 500 registrations from 64 goroutines, each fdatasync'd before it is acknowledged (bolt.Open, bolt:// URL, serve)
	CORRSTORE_SYNCTRACE_N=$${SYNCTRACE_N:-500} CORRSTORE_SYNCTRACE_GOROUTINES=64 $(GO) test -count=1 -timeout 20m -run '^TestFsyncBeforeAck$$' -v ./bolt/ ./cmd/corrstore/internal/storeurl/ ./cmd/corrstore/

.PHONY: test-redis
test-redis: ## the long Redis run: exactly-once at 5,000 on a real redis-server and a cluster
	CORRSTORE_REDIS_EXACTLY_ONCE=5000 $(GO) test -count=1 -timeout 30m -run '^TestReal(Server|Cluster)$$/^ExactlyOnce$$' -v ./redisstore/

.PHONY: lint
lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: bench
bench: ## run the benchmarks (ours next to each baseline, in one run)
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./bolt/ ./reaper/

.PHONY: bench-http
bench-http: ## register+reply over loopback HTTP, 64 clients, next to a bare net/http baseline
	$(GO) test -run '^$$' -bench RegisterReply -benchtime $(BENCHTIME) ./cmd/corrstore/internal/httpapi/

.PHONY: bench-client
bench-client: ## request->reply round trips, 64 requesters: client on bbolt and on Redis, each next to an in-memory map on the same transport
	$(GO) test -run '^$$' -bench RoundTrip -benchtime 3000x ./client/

.PHONY: bench-brokers
bench-brokers: ## request->reply round trips, 64 requesters, through RabbitMQ and NATS JetStream: client on bbolt next to an in-memory map on the same broker (starts its own brokers)
	$(GO) test -run '^$$' -bench RoundTrip -benchtime 2000x ./client/rabbitmq/ ./client/natsjs/

.PHONY: bench-deliver-cost
bench-deliver-cost: ## one Deliver to gathers holding 1, 100, 999 replies of 1 KiB, interleaved, bolt and a real redis-server; ratios to stored=1 (about 3 min)
	$(GO) test -run '^$$' -bench DeliverCost -benchtime 960x ./bolt/ ./redisstore/

.PHONY: bench-peers
bench-peers: ## corrstore against asynq and a raw MULTI HSET ZADD EXEC on one redis-server, interleaved rounds; prints `ratio NAME MEDIAN (MIN–MAX) rounds=N` (bench/ module; ~5 min)
	cd bench && $(GO) test -run '^$$' -bench Peers -benchtime 1x -timeout 30m .

.PHONY: test-broker-restart
test-broker-restart: ## RabbitMQ killed with SIGKILL and restarted, 10 times: a confirmed message must be delivered after it (issue 20: fails about 1 run in 7)
	CORRSTORE_BROKER_RESTART=1 $(GO) test -count=10 -timeout 30m -run '^TestBrokerRestart$$' ./client/rabbitmq/

.PHONY: repro-record
repro-record: ## issue 16 §4 through `corrstore serve`: 1 MiB replies to a gather until 413, 40 late ones to a single; answer sizes, RSS, registrations beside
	CORRSTORE_REPRO_RECORD=1 $(GO) test -count=1 -timeout 10m -run '^TestReproRecord$$' -v ./cmd/corrstore/

.PHONY: fuzz
fuzz: ## fuzz the record decoder, then the reply and event decoders (FUZZTIME each, default 60s)
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalCorrelation -fuzztime $${FUZZTIME:-60s} ./store/
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalApart -fuzztime $${FUZZTIME:-60s} ./store/

.PHONY: crash
crash: ## SIGKILL a writer 200+ times and check every acknowledged registration (CRASH_KILLS)
	CORRSTORE_CRASH_KILLS=$${CRASH_KILLS:-200} $(GO) test -run TestCrashLoop -count=1 -timeout 60m -v ./bolt/

.PHONY: import-100k
import-100k: ## export and import 100,000 correlations between bolt files, verified
	CORRSTORE_EXPORT_N=100000 $(GO) test -run 'TestExportImport$$' -count=1 -timeout 60m -v ./cmd/corrstore/

.PHONY: bench-redis
bench-redis: ## Redis store against raw MULTI/HSET/ZADD/EXEC on a real redis-server, then bytes per pending
	$(GO) test -run '^$$' -bench 'Register|Deliver' -benchtime $(BENCHTIME) ./redisstore/
	$(GO) test -run '^$$' -bench MemoryPerPending -benchtime 1x ./redisstore/

.PHONY: redis-restart
redis-restart: ## kill -9 a real redis-server under load (KILLS, default 20): always loses nothing; everysec measured
	CORRSTORE_REDIS_KILLS=$${KILLS:-20} $(GO) test -run 'TestRestart' -count=1 -timeout 30m -v ./redisstore/
