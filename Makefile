# DMSC. `make demo` and `make test` are the two commands README.md starts with.
GO      ?= go
P4C     ?= p4c-bm2-ss
BIN     := bin/dmsc

.PHONY: all build test demo p4 bench fmt vet fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/dmsc

test:
	./scripts/test.sh

# The draft's Figure 2 on the embedded software switch: pods calling each
# other by name, a link cut, a QoS event rerouted by SCSC.
demo:
	$(GO) run ./cmd/dmsc demo

# Recompile the P4 program into p4/build/ (BMv2 JSON + P4Info). Needs p4c.
p4:
	@command -v $(P4C) >/dev/null 2>&1 || { \
	  echo "make p4: $(P4C) is not on PATH; p4/build/ keeps the committed artifacts."; \
	  echo "         Build p4c (v1.2.4.17 fits Debian 12) and put p4c-bm2-ss on PATH: see p4/README.md."; \
	  exit 1; }
	$(P4C) --arch v1model --std p4-16 \
	  -o p4/build/dmsc.json \
	  --p4runtime-files p4/build/dmsc.p4info.txtpb \
	  p4/dmsc.p4
	@echo "make p4: p4/build/dmsc.json and p4/build/dmsc.p4info.txtpb rebuilt"

bench:
	./bench/run.sh

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
