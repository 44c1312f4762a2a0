# ferry: the two commands a newcomer needs are `sudo make demo` and `sudo make test`.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: deps build demo demo-local test lint clean

deps:
	bash scripts/install-deps.sh

build:
	$(CARGO) build --release --locked

demo: deps build
	bash scripts/demo.sh

demo-local: deps build
	bash scripts/demo-local.sh

test:
	bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

clean:
	$(CARGO) clean
