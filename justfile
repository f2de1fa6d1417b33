# Recipes mirror the README's commands; `just` is optional, each recipe is one
# plain command you can run without it.

# Run every test, installing what the tests need (redis-server) first.
test:
    ./scripts/test.sh

# Formatting, clippy with warnings denied, and docs with broken links denied.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

# The main job: `palisade demo` against its embedded flaky upstream.
demo:
    cargo run --release -p palisade-cli -- demo

# Every benchmark, then regenerate docs/benchmarks.md and its plots from the results.
bench:
    ./scripts/bench.sh

# What CI runs: lint, then every test.
ci: lint test
