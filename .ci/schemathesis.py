#!/usr/bin/env python3
"""Runs schemathesis against a real ferrify server, bounded in time.

    .ci/schemathesis.py PATH/TO/ferrify [SECONDS_PER_GROUP]

Starts `ferrify serve` on a free loopback port with a temporary data directory,
imports one app per mode (no required inputs, builtin models, so that every
schema-valid request can be accepted), creates a key for each, and runs
schemathesis on `/v1/openapi.json` once per group of operations with the key
of the app those operations are for. Exits non-zero when schemathesis reports
a failure. Needs schemathesis (pip install schemathesis) for this Python or on PATH.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ADMIN = "schemathesis-admin-token"

CHAT = """
app: {mode: chat, name: st-chat}
model_config:
  model: {provider: builtin, name: echo, mode: chat, completion_params: {}}
  pre_prompt: ""
  user_input_form: []
"""

COMPLETION = """
app: {mode: completion, name: st-completion}
model_config:
  model: {provider: builtin, name: echo, mode: chat, completion_params: {}}
  pre_prompt: "Say: {{topic}}"
  user_input_form:
  - text-input: {variable: topic, label: Topic, required: false, max_length: 4096, default: ""}
"""

WORKFLOW = """
app: {mode: workflow, name: st-workflow}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, title: Start, variables: [{variable: name, type: text-input, required: false, max_length: 4096}]}}
    - id: tt
      data: {type: template-transform, title: T, template: "Hello {{ name }}", variables: [{variable: name, value_selector: [start, name]}]}
    - {id: end, data: {type: end, title: End, outputs: [{variable: text, value_selector: [tt, output]}]}}
    edges:
    - {source: start, target: tt}
    - {source: tt, target: end}
"""

# (app DSL, operations as a path regex) — every documented path is in one group.
GROUPS = [
    (CHAT, r"^/(chat-messages.*|conversations.*|messages.*|info|parameters|meta|site|openapi\.json|files/.*|app/feedbacks|apps/annotations.*|)$"),
    (COMPLETION, r"^/completion-messages.*$"),
    (WORKFLOW, r"^/workflows?/.*$"),
    # Audio: no audio provider is configured here, so valid requests are answered
    # provider_not_initialize (400), as Dify does: only the negative checks apply.
    (CHAT, r"^/(audio-to-text|text-to-audio)$", ["--exclude-checks", "positive_data_acceptance"]),
    # A job id that is a valid UUID but no job is Dify's 400 "The job does not exist.".
    (CHAT, r"^/apps/annotation-reply/.*$", ["--exclude-checks", "positive_data_acceptance"]),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, method="POST"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    binary = os.path.abspath(sys.argv[1])
    seconds = sys.argv[2] if len(sys.argv) > 2 else "60"
    # The module of this interpreter (wherever pip put the script), else a script on PATH.
    if subprocess.run([sys.executable, "-m", "schemathesis.cli", "--version"], capture_output=True).returncode == 0:
        st = [sys.executable, "-m", "schemathesis.cli"]
    elif shutil.which("schemathesis"):
        st = [shutil.which("schemathesis")]
    else:
        print("schemathesis is not installed (pip install schemathesis)", file=sys.stderr)
        return 2
    data = tempfile.mkdtemp(prefix="ferrify-st-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(data, "server.log"), "wb")
    server = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}", "--data", os.path.join(data, "d"),
                               "--admin-token", ADMIN, "--no-demo"], stdout=log, stderr=log)
    failed = False
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{base}/v1/openapi.json", timeout=30) as r:
            documented = json.loads(r.read())["paths"]
        ungrouped = [p for p in documented if not any(re.search(g[1], p) for g in GROUPS)]
        if ungrouped:
            print(f"documented paths in no group of .ci/schemathesis.py: {ungrouped}", file=sys.stderr)
            failed = True
        for dsl, paths, *extra in GROUPS:
            app = call(f"{base}/console/api/apps/imports", {"mode": "yaml-content", "yaml_content": dsl})["app_id"]
            key = call(f"{base}/console/api/apps/{app}/api-keys")["token"]
            cmd = st + ["run", f"{base}/v1/openapi.json", "-H", f"Authorization: Bearer {key}",
                   "--include-path-regex", paths, "--max-examples", "15", "--max-time", seconds,
                   "--seed", "1", "--workers", "1", "--no-color", "--request-timeout", "20"] + (extra[0] if extra else [])
            print("+ schemathesis run …", "--include-path-regex", paths, flush=True)
            r = subprocess.run(cmd)
            failed |= r.returncode != 0
        if server.poll() is not None:
            print("the server died during the run", file=sys.stderr)
            failed = True
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        if failed:
            print(f"server log: {os.path.join(data, 'server.log')}", file=sys.stderr)
        else:
            shutil.rmtree(data, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
