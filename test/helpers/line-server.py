"""A stdio MCP server that reads its input the way the official Python SDK does.

The SDK wraps stdin in io.TextIOWrapper, whose universal-newlines mode ends a line at CR, LF or
CRLF (Java's and .NET's line readers do the same). Every line it reads is appended, as it came,
to the file named by LINES_FILE, and every tool it runs to RAN_FILE, so a test can see what
reached it and what ran.

Tools: echo, secret_report.
"""
import io
import json
import os
import sys

LINES = os.environ["LINES_FILE"]
RAN = os.environ["RAN_FILE"]
TOOLS = [
    {"name": "echo", "description": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "secret_report", "description": "secret", "inputSchema": {"type": "object"}},
]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def record(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(text) + "\n")


def handle(message):
    method = message.get("method")
    if "id" not in message or method is None:
        return
    mid = message["id"]
    if method == "initialize":
        version = message.get("params", {}).get("protocolVersion", "2025-06-18")
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": {"name": "line-server", "version": "1.0.0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = message.get("params", {}).get("name")
        if name not in [t["name"] for t in TOOLS]:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "Unknown tool: %s" % name}})
            return
        record(RAN, name)
        text = json.dumps(message.get("params", {}).get("arguments", {}))
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": text}]}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})


for line in io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8"):
    record(LINES, line)
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if isinstance(message, dict):
        handle(message)
