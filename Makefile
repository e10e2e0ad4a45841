# The two commands of the README's Quick start. Each runs the idempotent setup first
# (system packages for gilrs, libtorch 2.13.0 into ~/.cache/intervened).
.PHONY: demo test setup setup-test lint

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

demo: setup
	cargo run -- bench dagger --quick

test: setup-test
	cargo test --workspace

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
