# Rectifier developer entry points. Every target installs missing Debian
# packages first (scripts/install-deps.sh is a no-op when all are present).
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= 2
GRPC_ADDRESS ?= 0.0.0.0:8001
HTTP_ADDRESS ?= 0.0.0.0:8000
METRICS_ADDRESS ?= 0.0.0.0:8002
MODEL_REPOSITORY ?= models
CTEST_ARGS ?=
PREFIX ?= /usr/local

.PHONY: all deps configure build install run test lint check-thread-safety format bench clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

# rectifier-server, -client, -perf, -engine in $(PREFIX)/bin and the protos in
# $(PREFIX)/share/rectifier/proto (sudo for the default /usr/local).
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

run: build
	$(BUILD_DIR)/server/rectifier-server --model-repository $(MODEL_REPOSITORY) \
	  --grpc-address $(GRPC_ADDRESS) --http-address $(HTTP_ADDRESS) \
	  --metrics-address $(METRICS_ADDRESS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS) $(CTEST_ARGS)
	@$(if $(filter 1,$(FUZZ_REPLAY)),$(MAKE) --no-print-directory fuzz-replay)

lint: configure
	@scripts/lint.sh $(BUILD_DIR)

# Clang's -Wthread-safety over server/ (the lock annotations are checked).
check-thread-safety: build
	@scripts/check-thread-safety.sh $(BUILD_DIR)

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

bench: build
	@bench/run.sh $(BUILD_DIR)

# Parity with ONNX Runtime 1.30 on the large zoo models (the small ones run in
# make test); exports are cached in models/.cache/zoo/. docs/PERFORMANCE.md.
PARITY_MODELS ?= resnet50 mobilenet_v2 efficientnet_b0 yolo_like
.PHONY: bench-parity
bench-parity: build
	/usr/bin/python3 tools/parity/ort_parity.py --engine $(BUILD_DIR)/tools/engine/rectifier-engine \
	  --zoo $(PARITY_MODELS) --batches 1 3 --threads $(JOBS)

# Engine vs ONNX Runtime side by side (bench/compare/compare.py --help); a quick
# subset: make bench-compare COMPARE_ARGS="--models mobilenet_v2 --batches 1 --rounds 1"
COMPARE_ARGS ?=
.PHONY: bench-compare
bench-compare: build
	/usr/bin/python3 bench/compare/compare.py --build $(BUILD_DIR) $(COMPARE_ARGS)

# The whole server (KServe ModelInfer at batch 8, transfer included) vs ONNX
# Runtime in process (bench/server/server_vs_ort.py --help).
SERVER_ORT_ARGS ?=
.PHONY: bench-server-ort
bench-server-ort: build
	/usr/bin/python3 bench/server/server_vs_ort.py --build $(BUILD_DIR) $(SERVER_ORT_ARGS)

# Every performance target of docs/PERFORMANCE.md measured and judged in one
# run (bench/targets.py --help; about 30 minutes on 2 CPUs). Judged only on a
# CPU without AVX-512.
TARGETS_ARGS ?=
.PHONY: bench-targets
bench-targets: build
	/usr/bin/python3 bench/targets.py --build $(BUILD_DIR) $(TARGETS_ARGS)

clean:
	rm -rf $(BUILD_DIR)

# Offline checks of docker/ and deploy/ (promtool, docker-compose config, Grafana
# schema, kustomize + kubernetes-models). LIVE_BUILD=build also runs every
# dashboard/alert/adapter query against a real server and Prometheus on loopback.
.PHONY: check-deploy
check-deploy:
	@scripts/check-deploy.sh $(if $(LIVE_BUILD),--live $(LIVE_BUILD))

# Builds the container image against a local debootstrap base (no registry)
# and smoke-tests it with host networking (deploy/test/docker-test.sh; needs
# root and a running Docker daemon; ~15-25 min on 2 cores). Not in `make test`.
.PHONY: docker-test
docker-test: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS) --target rectifier-client rectifier-perf
	@deploy/test/docker-test.sh $(BUILD_DIR)

# Two replicas behind nginx on loopback, one SIGKILLed mid-load; every request
# must be answered exactly once (deploy/test/replicas-nginx.sh, ~20 s; also
# the ctest deploy_replicas_nginx in `make test`).
.PHONY: replica-test
replica-test: build
	@deploy/test/replicas-nginx.sh $(BUILD_DIR)

# libFuzzer targets (fuzz/, docs/FUZZING.md), built with clang-14, ASan and
# UBSan in $(FUZZ_BUILD_DIR). `make fuzz FUZZ_SECONDS=N` runs each target N
# seconds on a scratch copy of its corpus (fuzz/corpus/<target>); crashes go
# to $(FUZZ_BUILD_DIR)/fuzz/campaign/<target>/artifacts/. `make test` ends
# with fuzz-replay: every corpus file once plus a few seconds of fuzzing per
# target (FUZZ_REPLAY=0 skips it).
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image_decode dicom onnx model_config infer_request vision_request http_request \
  security tuning_file
FUZZ_REPLAY ?= 1
.PHONY: fuzz-build fuzz fuzz-replay
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=clang++-14 -DRECTIFIER_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD_DIR) -j$(JOBS)

fuzz: fuzz-build
	@status=0; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  fuzz/run.sh fuzz $(FUZZ_BUILD_DIR)/fuzz/$${t}_fuzz fuzz/corpus/$$t $(FUZZ_SECONDS) \
	    $(FUZZ_BUILD_DIR)/fuzz/campaign/$$t || status=1; \
	done; exit $$status

fuzz-replay: fuzz-build
	ctest --test-dir $(FUZZ_BUILD_DIR) --output-on-failure -j$(JOBS)

# Soak (tools/soak/README.md): SOAK_REQUESTS mixed requests at SOAK_CONCURRENCY
# against its own server on loopback, every answer checked against a reference;
# fails on a lost or wrong answer, a crash or > 5% RSS growth. Not in `make test`.
SOAK_REQUESTS ?= 1000000
SOAK_CONCURRENCY ?= 64
SOAK_ARGS ?=
.PHONY: soak
soak: build
	/usr/bin/python3 tools/soak/soak.py --build $(BUILD_DIR) --requests $(SOAK_REQUESTS) \
	  --concurrency $(SOAK_CONCURRENCY) $(SOAK_ARGS)
