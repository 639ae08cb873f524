#!/usr/bin/env bash
# Runs every test of the workspace against real services: starts PostgreSQL if it is down,
# installs and starts the Kafka-protocol test broker (tansu) if needed, then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/test-services.sh)"
export HERALD_TEST_DATABASE_URL HERALD_TEST_KAFKA_BROKERS HERALD_PROMTOOL
# The crash tests run the `herald` binary as a separate process; build it first.
cargo build --bin herald
cargo test --workspace "$@"
