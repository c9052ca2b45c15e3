"""What the remediation Lambda's build settings cost it (run by
scripts/bench-lambda-build): the bootstrap runs under a Runtime API served
here, as Lambda runs it, against the local endpoint.

- init: from the process's start to its first request for an event (the
  cold start Lambda bills), 20 runs;
- invoke: one ALARM event, from handing it over to the function's response
  (stop and start of an instance, a report on SNS), and the process's CPU
  time for init and the invocation together, 20 runs.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

BOOTSTRAP = sys.argv[1]
RUNS = int(os.environ.get("LAMBDA_BENCH_RUNS", "20"))


class Runtime:
    """One process's Runtime API: hands out `events`, then holds /next."""

    def __init__(self, events):
        self.events = list(events)
        self.first_next = None
        self.handed = None
        self.responded = None
        self.response = None
        self.done = threading.Event()
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                now = time.monotonic()
                if runtime.first_next is None:
                    runtime.first_next = now
                if not runtime.events:
                    runtime.done.set()
                    time.sleep(30)  # the process is killed meanwhile
                    return
                body = json.dumps(runtime.events.pop(0)).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-2:123456789012:function:bench")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                runtime.handed = time.monotonic()

            def do_POST(self):
                runtime.responded = time.monotonic()
                length = int(self.headers.get("Content-Length", 0))
                runtime.response = self.rfile.read(length).decode()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"


def cpu_seconds(pid):
    """Time on a CPU of every thread so far, in nanoseconds' resolution."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def run(events, env):
    runtime = Runtime(events)
    started = time.monotonic()
    p = subprocess.Popen([BOOTSTRAP], env={**env, "AWS_LAMBDA_RUNTIME_API": runtime.address()},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not runtime.done.wait(60):
        p.kill()
        sys.exit(f"bench: the bootstrap did not ask for another event: {p.stderr.read().decode()[-2000:]}")
    cpu = cpu_seconds(p.pid)
    p.kill()
    p.wait()
    runtime.server.shutdown()
    return runtime.first_next - started, runtime, cpu


def main():
    ec2 = boto3.client("ec2", region_name=os.environ["AWS_REGION"])
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    topic = boto3.client("sns", region_name=os.environ["AWS_REGION"]).create_topic(Name="bench-remediation")["TopicArn"]
    env = {**os.environ,
           "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
           "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
           "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
           "INSTANCE_IDS": instance, "TOPIC_ARN": topic}
    alarm = {"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:us-east-2:123456789012:alarm:slow",
             "alarmData": {"alarmName": "slow", "state": {"value": "ALARM", "reason": "bench"},
                           "previousState": {"value": "OK"}}}

    inits = [run([], env)[0] for _ in range(RUNS)]
    invokes, cpus = [], []
    for _ in range(RUNS):
        _, runtime, cpu = run([alarm], env)
        if '"outcome"' not in (runtime.response or ""):
            sys.exit(f"bench: the invocation failed: {runtime.response}")
        invokes.append(runtime.responded - runtime.handed)
        cpus.append(cpu)
    ms = lambda xs: f"{statistics.median(xs) * 1000:.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"
    print(f"init (start to first /next), {RUNS} runs: median {ms(inits)}")
    print(f"invoke (ALARM: stop, start, report), {RUNS} runs: median {ms(invokes)}")
    print(f"CPU time, init + invoke: median {ms(cpus)}")


main()
