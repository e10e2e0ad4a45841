# The two commands of the README's Quick start. Each runs the idempotent setup first
# (system packages for gilrs, libtorch 2.13.0 into ~/.cache/intervened).
.PHONY: demo test setup lint

setup:
	@bash scripts/setup.sh

demo: setup
	cargo run -- bench dagger --quick

test: setup
	cargo test --workspace

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
