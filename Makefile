# Backstop: the local stack, the demo and the tests. Each target installs the pinned Python
# tools (moto, cargo-lambda) first; that is quick when they are already there.

PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libfaketime (Debian package faketime) moves moto's clock for the 400-day retention test.
# Headless Chromium (Debian package chromium) renders the HTML report in its test.
CHROMIUM := $(firstword $(shell command -v chromium chromium-browser 2>/dev/null))
FAKETIME_LIB := $(firstword $(wildcard /usr/lib/*-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1))
# The openssl command makes the local certificate authority of the TLS roots test.
OPENSSL := $(firstword $(shell command -v openssl 2>/dev/null))

.PHONY: deps demo test chaos infra-check deploy-check local lint bench bench-export bench-restore bench-tools zips

deps:
	$(PIP_INSTALL)
	[ -x .venv-checkov/bin/checkov ] || { $(PYTHON) -m venv .venv-checkov && .venv-checkov/bin/pip install --disable-pip-version-check -q -r requirements-checkov.txt; }
	# iam-simulate (npm, pinned in infra/tests/iam/package-lock.json) decides the IAM-enforced
	# tests' requests (infra/tests/moto_iam.py); Node.js and npm come with the machine.
	[ -d infra/tests/iam/node_modules/@cloud-copilot/iam-simulate ] || (cd infra/tests/iam && npm ci --no-audit --no-fund --loglevel=error)
ifeq ($(FAKETIME_LIB),)
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq faketime
endif
ifeq ($(CHROMIUM),)
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium
endif
ifeq ($(OPENSSL),)
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq openssl
endif

## The demo: starts moto on loopback, creates the stack and the demo tables, runs the daily
## cycle, prints the report, the SNS message read from SQS and the metrics; stops moto.
demo: deps
	cargo run -q -p backstop-cli -- demo

## Every test: unit, property, emulator integration, CLI and Lambda Runtime API smoke tests,
## then the template: cfn-lint, checkov, and the SAM-translated stack deployed to moto.
test: deps
	cargo test --workspace
	$(MAKE) --no-print-directory infra-check

## The longer chaos and fuzz runs (make test runs 3 seeds and 1,000 inputs per entry point):
## 12 seeds of the daily cycle under 30 % faults, 5,000 inputs per entry point; prints figures.
chaos: deps
	BACKSTOP_CHAOS_SEEDS=12 cargo test --workspace --test chaos -- --nocapture
	BACKSTOP_FUZZ_CASES=5000 BACKSTOP_FUZZ_SEED=$$(date +%s) cargo test --workspace --test fuzz -- --nocapture

infra-check:
	cfn-lint infra/template.yaml
	.venv-checkov/bin/checkov -f infra/template.yaml --compact --quiet --skip-download
	$(PYTHON) -m pytest -q infra/tests

## The deploy path up to where an AWS account is needed: SAM CLI (pinned, its own virtualenv),
## `sam validate --lint`, `sam build` of every function for arm64 (cargo lambda, zig), and a
## check that each artifact is an aarch64 ELF binary, with its size.
deploy-check: export SAM_CLI_TELEMETRY = 0
deploy-check: deps
	[ -x .venv-sam/bin/sam ] || { $(PYTHON) -m venv .venv-sam && .venv-sam/bin/pip install --disable-pip-version-check -q -r requirements-sam.txt; }
	.venv-sam/bin/sam --version
	AWS_DEFAULT_REGION=us-east-1 .venv-sam/bin/sam validate --lint -t infra/template.yaml
	.venv-sam/bin/sam build -t infra/template.yaml --beta-features
	$(PYTHON) infra/check_artifacts.py .aws-sam/build infra/template.yaml

## The local stack alone, left running until Ctrl-C (prints the environment to use it).
local: deps
	cargo run -q -p backstop-cli -- local up

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Cold start, Rust vs Python boto3, 20 runs each (release builds; prints a table).
bench: deps
	cargo build --release -p snapshot
	cargo build --profile release-o3 -p snapshot
	$(PYTHON) bench/coldstart.py --runs 20

## Export: Backstop's logical export vs dynamodump on one moto (20,000 items), Backstop's peak RSS
## at 10,000 vs 100,000 items and verifying those exports, fingerprint MB/s on one core
## (release builds; prints a table).
## dynamodump goes into its own virtualenv (its boto3 pin clashes with moto's); GNU time
## measures each client's own peak RSS.
bench-export: deps bench-tools
	cargo build --release -p backstop-cli
	cargo build --release -p backstop-shared --example fingerprint_bench
	$(PYTHON) bench/export.py

## Restore: `backstop restore export --via load` vs dynamodump's restore of the same 20,000 items
## on one moto: wall, CPU, peak RSS, items exactly equal (release build; prints a table).
bench-restore: deps bench-tools
	cargo build --release -p backstop-cli
	$(PYTHON) bench/restore.py

bench-tools:
	[ -x target/venv-bench/bin/python ] || $(PYTHON) -m venv target/venv-bench
	target/venv-bench/bin/pip install --disable-pip-version-check -q -r requirements-bench.txt
	[ -x /usr/bin/time ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq time; }

## Deployable zips for Lambda (arm64, provided.al2023): target/lambda/<function>/bootstrap.zip
zips: deps
	cargo lambda build --release --arm64 --output-format zip -p snapshot -p export -p retention -p validate -p restore -p bucket
