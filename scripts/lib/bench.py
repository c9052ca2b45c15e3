"""The benchmarks of issue 12, each with its goal (run by scripts/bench).

Every scenario runs BENCH_RUNS times (5 by default) against the local endpoint
behind the latency proxy; per scenario it prints the median wall time, the
same runs' lower bound or critical path and their ratio, calls per resource,
mutating calls and peak memory, and the process exits 1 when a goal is missed.
BENCH_SMOKE=1 (CI) runs each scenario once on small stacks and checks only
what does not depend on the machine: call counts, mutating calls, exit codes.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

WORK, CALLS, BIN, REPO = sys.argv[1:5]
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "5"))
LATENCY = int(os.environ.get("LATENCY_MS", "0"))
BIG = 40 if SMOKE else int(os.environ.get("BENCH_BIG", "250"))  # × 4 types
VALIDATE_N = 400 if SMOKE else 10_000
missed = []
rows = []


def calls_so_far():
    with open(CALLS) as f:
        return sum(1 for _ in f)


def calls_since(n):
    with open(CALLS) as f:
        lines = f.readlines()[n:]
    return [json.loads(l) for l in lines if l.strip()]


def mutating(calls):
    return [c for c in calls if not re.match(r"(Get|List|Describe|Head|Lookup)", c["operation"])]


def run(args, cwd, expect=(0,)):
    """Runs stackctl; returns (wall seconds, peak MiB, stdout, calls)."""
    before = calls_so_far()
    timing = os.path.join(WORK, "time")
    started = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", timing, BIN, *args],
                       cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - started
    if p.returncode not in expect:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit(f"bench: `stackctl {' '.join(args)}` exited {p.returncode}")
    with open(timing) as f:
        kib = int(f.read().split()[-1])
    return wall, kib / 1024, p.stdout + p.stderr, calls_since(before)


def report(name, wall, bound, goal_ratio=None, goal_wall=None, calls=None, per=None,
           goal_per=None, mut=None, mib=None, goal_mib=None, note=""):
    ok = True
    ratio = wall / bound if bound else None
    if not SMOKE:
        if goal_ratio and ratio and ratio > goal_ratio:
            ok = False
        if goal_wall and wall > goal_wall:
            ok = False
        if goal_mib and mib and mib > goal_mib:
            ok = False
    if goal_per is not None and per is not None and per > goal_per:
        ok = False
    line = f"{name:<44} median {wall:7.3f} s"
    if bound:
        line += f"  bound {bound:6.3f} s  ratio {ratio:4.2f}" + (f" (goal ≤ {goal_ratio})" if goal_ratio else "")
    if goal_wall:
        line += f" (goal ≤ {goal_wall} s)"
    if calls is not None:
        line += f"  {calls} calls"
    if per is not None:
        line += f", {per:.2f}/resource" + (f" (goal ≤ {goal_per})" if goal_per is not None else "")
    if mut is not None:
        line += f", {mut} mutating"
    if mib is not None:
        line += f"  {mib:.0f} MiB" + (f" (goal ≤ {goal_mib})" if goal_mib else "")
    line += f"  {note}" if note else ""
    line += "" if ok else "  MISSED"
    print("bench: " + line, flush=True)
    rows.append(line)
    if not ok:
        missed.append(name)


def need(name, cond, what):
    if not cond:
        print(f"bench: {name}: {what}  MISSED", flush=True)
        missed.append(name)


def stack_dir(name, text):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "stack.yaml"), "w") as f:
        f.write(text)
    return d


def big_stack(n, backend=""):
    """n each of topics, queues, log groups and alarms on the topics."""
    out = [f"stack: big\nregion: us-east-2\n{backend}resources:"]
    for i in range(n):
        out.append(f"""  topic_{i}:
    type: aws_sns_topic
    properties: {{name: big-topic-{i}}}
  queue_{i}:
    type: aws_sqs_queue
    properties: {{name: big-queue-{i}}}
  logs_{i}:
    type: aws_cloudwatch_log_group
    properties: {{name: big-logs-{i}, retention_in_days: 7}}
  alarm_{i}:
    type: aws_cloudwatch_metric_alarm
    properties:
      alarm_name: big-alarm-{i}
      namespace: Big
      metric_name: Errors{i}
      statistic: Sum
      period: 60
      evaluation_periods: 1
      threshold: 1
      comparison_operator: GreaterThanThreshold
      alarm_actions: ["${{topic_{i}.arn}}"]""")
    return "\n".join(out) + "\n"


def validate_stack(n):
    out = ["stack: wide\nregion: us-east-2\nresources:"]
    for i in range(n // 2):
        out.append(f"""  topic_{i}:
    type: aws_sns_topic
    properties: {{name: t-{i}}}
  queue_{i}:
    type: aws_sqs_queue
    properties:
      name: q-{i}
      tags: {{topic: "${{topic_{i}.arn}}"}}""")
    return "\n".join(out) + "\n"


def median_runs(args, cwd, runs=RUNS, before_each=None):
    walls, mibs, last = [], [], None
    for _ in range(runs):
        if before_each:
            before_each()
        wall, mib, out, calls = run(args, cwd, expect=(0, 2))
        walls.append(wall)
        mibs.append(mib)
        last = (out, calls)
    return statistics.median(walls), max(mibs), last[0], last[1], walls


# P5: validate of a generated 10,000-resource stack, offline.
d = stack_dir("validate", validate_stack(VALIDATE_N))
wall, mib, out, calls, _ = median_runs(["validate"], d)
report(f"P5 validate, {VALIDATE_N:,} resources", wall, None, goal_wall=0.2, mib=mib, goal_mib=100,
       calls=len(calls))
need("P5 validate makes no call", not calls, f"{len(calls)} calls")

# P7: check of a fleet (tests/e2e/fleet.rs's stack: an instance, log group,
# metric filter and alarm per key, one topic) of FLEET_N keys, offline.
def fleet_stack(n):
    keys = ", ".join(f"web-{i}: {{size: t3.micro}}" for i in range(n))
    return f"""stack: fleet
region: us-east-2
variables:
  fleet:
    default: {{{keys}}}
resources:
  alerts:
    type: aws_sns_topic
    properties: {{name: fleet-alerts}}
  server:
    type: aws_instance
    for_each: ${{var.fleet}}
    properties: {{ami: ami-12c6146b, instance_type: "${{each.value.size}}"}}
  logs:
    type: aws_cloudwatch_log_group
    for_each: ${{var.fleet}}
    properties: {{name: "/fleet/${{each.key}}", retention_in_days: 7}}
  slow:
    type: aws_cloudwatch_log_metric_filter
    for_each: ${{var.fleet}}
    properties:
      name: slow-${{each.key}}
      log_group_name: ${{logs[each.key].name}}
      pattern: "[w1=High, w2=response, w3=time, w4=for, endpoint, response_time>3000, unit=ms]"
      metric_transformation: {{name: "SlowResponses-${{each.key}}", namespace: Fleet, value: "1"}}
  alarm:
    type: aws_cloudwatch_metric_alarm
    for_each: ${{var.fleet}}
    properties:
      alarm_name: slow-${{each.key}}
      namespace: Fleet
      metric_name: SlowResponses-${{each.key}}
      statistic: Sum
      period: 600
      evaluation_periods: 1
      threshold: 5
      comparison_operator: GreaterThanThreshold
      treat_missing_data: notBreaching
      alarm_actions: ["${{alerts.arn}}"]
"""


FLEET_N = 50 if SMOKE else 1_000
d = stack_dir("fleet", fleet_stack(FLEET_N))
wall, mib, out, calls, _ = median_runs(["check"], d)
report(f"P7 check, fleet of {FLEET_N:,} keys ({4 * FLEET_N + 1:,} resources)", wall, None,
       goal_wall=0.5, mib=mib, goal_mib=100, calls=len(calls))
need("P7 check proves every link", f"{3 * FLEET_N} of {3 * FLEET_N} links proven" in out, out[-200:])

# P8: `stackctl review` of 1,000 resources (big_stack: topics, queues, log
# groups, alarms), offline, then the page opened in headless Chromium: the
# time to its load event, every box drawn, a click answered.
REVIEW_N = 40 if SMOKE else 250
d = stack_dir("review", big_stack(REVIEW_N))
wall, mib, out, calls, _ = median_runs(["review", "--offline", "--out", "review.html"], d)
report(f"P8 review page, {4 * REVIEW_N:,} resources", wall, None, goal_wall=1.0,
       mib=mib, goal_mib=200, calls=len(calls))
need("P8 review --offline makes no call", not calls, f"{len(calls)} calls")
driver = os.path.join(REPO, "tests/browser/review.mjs")
opened = [json.loads(subprocess.run(
    ["node", driver, os.path.join(d, "review.html"), "--click", "queue_7"],
    check=True, capture_output=True, text=True).stdout) for _ in range(RUNS)]
load = statistics.median(o["load_ms"] for o in opened) / 1000
report(f"P8 review page opened in Chromium", load, None, goal_wall=2.0)
seen = opened[0]
need("P8 every box drawn", len(seen["nodes"]) == 4 * REVIEW_N, len(seen["nodes"]))
need("P8 a click shows the resource", seen["inspector"]["shown"] and "queue_7" in seen["inspector"]["text"],
     seen["inspector"])
need("P8 no console error", not seen["console_errors"] and not seen["page_errors"], seen)

# The seed stack in its single-instance form (tests/fixtures/seed), which the
# figures have measured since before fleets; its Lambda built before (P6
# measures the build).
seed_text = open(os.path.join(REPO, "tests/fixtures/seed/stack.yaml")).read().replace(
    "      source: lambda\n", f"      source: {REPO}/lambda\n")
seed = stack_dir("seed", seed_text)
subprocess.run([BIN, "build"], cwd=seed, check=True, capture_output=True)


def critical_path(out, deps):
    """The longest dependency chain of the apply's steps, each at the time it
    took, plus what came before the first step (start-up, refresh, plan)."""
    steps = {m.group(1): float(m.group(2)) for m in
             re.finditer(r"^(\w+): (?:created|updated|destroyed|found and adopted)[^\n]*\[([\d.]+)s\]$", out, re.M)}
    walk = float(re.search(r"complete! .*\[([\d.]+)s\]", out).group(1))
    memo = {}

    def chain(i):
        if i not in memo:
            memo[i] = steps.get(i, 0.0) + max((chain(d) for d in deps.get(i, ()) if d in steps), default=0.0)
        return memo[i]
    return max((chain(i) for i in steps), default=0.0), walk


graph = json.loads(subprocess.run([BIN, "graph", "--format", "json"], cwd=seed, check=True,
                                  capture_output=True, text=True).stdout)
deps = {}
for e in graph["edges"]:
    if e["kind"] == "dependency":
        deps.setdefault(e["from"], []).append(e["to"])

# P3: the seed stack's apply against its critical path.
ratios, walls, bounds = [], [], []
for i in range(RUNS):
    wall, mib, out, calls = run(["apply", "--auto-approve"], seed)
    chain, walk = critical_path(out, deps)
    bound = (wall - walk) + chain
    walls.append(wall)
    bounds.append(bound)
    if i < RUNS - 1:
        run(["destroy", "--auto-approve"], seed)
report("P3 apply, seed stack", statistics.median(walls), statistics.median(bounds), goal_ratio=1.2,
       calls=len(calls), mut=len(mutating(calls)), mib=mib, note="(bound: critical path)")

# P1: its no-op plan against start-up and load plus the slowest read.
walls, bounds = [], []
for _ in range(RUNS):
    start_up, _, _, _ = run(["validate"], seed)
    wall, mib, out, calls = run(["plan", "--detailed-exitcode"], seed, expect=(0,))
    walls.append(wall)
    bounds.append(start_up + max(c["ms"] for c in calls) / 1000)
report("P1 no-op plan, seed stack", statistics.median(walls), statistics.median(bounds), goal_ratio=1.5,
       calls=len(calls), mut=len(mutating(calls)), mib=mib,
       note="(bound: start-up and load + slowest read)")
need("P1 no-op plan changes nothing", not mutating(calls), f"{len(mutating(calls))} mutating calls")

# P4: a no-op apply makes no mutating call and runs no cargo; a code-only
# change of a function deployed from a zip makes at most 3 calls.
wall, mib, out, calls = run(["apply", "--auto-approve"], seed)
need("P4 no-op apply: 0 mutating calls", not mutating(calls), f"{len(mutating(calls))} mutating")
need("P4 no-op apply: no cargo", "building" not in out, "it ran cargo")
report("P4 no-op apply, seed stack", wall, None, calls=len(calls), mut=len(mutating(calls)), mib=mib)
run(["destroy", "--auto-approve"], seed)

fn = stack_dir("function", """stack: code
region: us-east-2
resources:
  role:
    type: aws_iam_role
    properties:
      name: bench-code-role
      assume_role_policy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {Service: lambda.amazonaws.com}, Action: "sts:AssumeRole"}]}
  function:
    type: aws_lambda_function
    properties:
      function_name: bench-code
      role: ${role.arn}
      runtime: provided.al2023
      handler: bootstrap
      filename: fn.zip
""")


def write_zip(text):
    import zipfile
    with zipfile.ZipFile(os.path.join(fn, "fn.zip"), "w") as z:
        z.writestr("bootstrap", text)


write_zip("#!/bin/sh\necho one\n")
run(["apply", "--auto-approve"], fn)
write_zip("#!/bin/sh\necho two\n")
wall, mib, out, calls = run(["apply", "--auto-approve"], fn)
after_plan = [c for c in calls if c["service"] == "lambda" and c["operation"] not in ("GetFunction",)]
writes = mutating(calls)
report("P4 code-only change, function from a zip", wall, None, calls=len(calls), mut=len(writes), mib=mib,
       note="mutating: " + ",".join(c["operation"] for c in writes))
need("P4 code-only change: ≤ 3 calls after the plan's reads", len(writes) <= 3, f"{len(writes)} writes")
run(["destroy", "--auto-approve"], fn)

# P2 and the state's cost: n of each of four types; apply (local, then S3),
# the no-op plan, destroy.
n = BIG * 4
big = stack_dir("big", big_stack(BIG))


def applies(d):
    """RUNS applies of the stack in d, each but the last followed by destroy."""
    walls, mibs = [], []
    for i in range(RUNS):
        wall, mib, out, calls = run(["apply", "--auto-approve"], d)
        walls.append(wall)
        mibs.append(mib)
        if i < RUNS - 1:
            run(["destroy", "--auto-approve"], d)
    return statistics.median(walls), max(mibs), calls


wall, mib, calls = applies(big)
report(f"apply, {n:,} resources (local state)", wall, None, calls=len(calls), per=len(calls) / n,
       mut=len(mutating(calls)), mib=mib)
local_apply = wall
journal = os.path.join(big, "state", "big.json")
state_bytes = os.path.getsize(journal)

wall, mib, out, calls, _ = median_runs(["plan", "--detailed-exitcode"], big)
reads = [c for c in calls if c["service"] not in ("sts",)]
report(f"P2 no-op plan, {n:,} resources", wall, None, goal_wall=2.0, calls=len(calls),
       per=len(reads) / n, goal_per=0.6, mut=len(mutating(calls)), mib=mib)
run(["destroy", "--auto-approve"], big)

s3 = stack_dir("big-s3", big_stack(BIG, "backend:\n  s3: {bucket: bench-state, key: big.json}\n"))
subprocess.run([sys.executable, "-c", f"""
import boto3
s3 = boto3.client('s3', endpoint_url='{os.environ['AWS_ENDPOINT_URL']}', region_name='us-east-2')
s3.create_bucket(Bucket='bench-state', CreateBucketConfiguration={{'LocationConstraint': 'us-east-2'}})
s3.put_bucket_versioning(Bucket='bench-state', VersioningConfiguration={{'Status': 'Enabled'}})
"""], check=True, env={**os.environ, "PATH": os.environ["PATH"]})
wall, mib, calls = applies(s3)
journal_puts = [c for c in calls if c["operation"] == "PutObject" and ".journal/" in c["path"]]
journal_bytes = sum(c["bytes"] for c in journal_puts)
s3_calls = [c for c in calls if c["service"] == "s3"]
report(f"apply, {n:,} resources (S3 state)", wall, local_apply, calls=len(calls), mib=mib,
       note=f"(bound: the same apply with local state) {len(s3_calls)} S3 calls, "
            f"{(wall - local_apply) / n * 1000:+.1f} ms/resource")
per_resource = journal_bytes / max(len(journal_puts), 1)
need("P4 journal O(n)", journal_bytes < 4 * state_bytes,
     f"{journal_bytes:,} journal bytes for a {state_bytes:,}-byte state")
print(f"bench: P4 state journal of the {n:,}-resource apply: {len(journal_puts)} entries, "
      f"{journal_bytes:,} bytes ({per_resource:.0f} per entry) for a final state of {state_bytes:,} bytes; "
      f"whole-state rewrites would have written ~{len(journal_puts) * state_bytes // 2:,}", flush=True)
run(["destroy", "--auto-approve"], s3)

print("\nbench: summary (latency %d ms per call, %d runs per scenario%s)" % (LATENCY, RUNS, ", smoke" if SMOKE else ""))
for r in rows:
    print("  " + r)
if missed:
    print("bench: missed: " + "; ".join(missed))
    sys.exit(1)
