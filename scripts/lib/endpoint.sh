# Sourced by scripts/demo and scripts/bench: starts the local AWS-compatible
# endpoint (moto behind stackctl's recording proxy, built in release) and points
# the AWS configuration chain at it. Every call it serves is appended to $calls.
# Needs $work (a scratch directory, removed on exit).

calls="$work/calls.jsonl"
touch "$calls"
target/${profile:-release}/localaws --calls-log "$calls" ${LATENCY_MS:+--latency-ms "$LATENCY_MS"} > "$work/endpoint" &
endpoint_pid=$!
trap 'kill $endpoint_pid 2>/dev/null; wait $endpoint_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do
  grep -q AWS_ENDPOINT_URL "$work/endpoint" 2>/dev/null && break
  kill -0 $endpoint_pid 2>/dev/null || { echo "the local endpoint did not start" >&2; exit 1; }
  sleep 0.1
done
export "$(head -1 "$work/endpoint")"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-2
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
echo "local endpoint at $AWS_ENDPOINT_URL" >&2

# Lines of $calls since line $1, and how many of them could change something.
calls_since() { tail -n +"$(($1 + 1))" "$calls"; }
mutating_since() { calls_since "$1" | grep -cvE '"operation":"(Get|List|Describe|Head|Lookup)' || true; }
