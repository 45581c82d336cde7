"""Access tokens and the Cerebras key never reach the logs or the metrics.

The chat service runs as a process with both configured, against a cloud stand-in that
refuses the key and echoes it back in its error (as a careless upstream might); calls come
with good, wrong and no tokens; then its whole log and /metrics page are searched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.speech import REPO
from tests.secure import TOKEN_A
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

API_KEY = "csk-" + "k3y" * 12
WRONG_TOKEN = "w" * 20 + "-not-a-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _EchoingRefusal(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"message": f"key not valid: {self.headers.get('authorization')}"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cloud() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingRefusal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_tokens_and_the_cloud_key_stay_out_of_logs_and_metrics(cloud: str) -> None:
    port, metrics_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'protos'}",
        "LLM_ENGINE": "cerebras",
        "CEREBRAS_API_KEY": API_KEY,
        "CEREBRAS_BASE_URL": cloud,
        "LLM_TOKENS": f"alice:{TOKEN_A}",
        "LLM_PORT": str(port),
        "LLM_METRICS_PORT": str(metrics_port),
        "LLM_LOG_LEVEL": "debug",
        "LLM_DEADLINE_S": "3",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.llm"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(150):
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
            stub = llm_pb2_grpc.LlmServiceStub(channel)
            good = (("authorization", f"Bearer {TOKEN_A}"),)
            await stub.GetInfo(llm_pb2.GetInfoRequest(), metadata=good)
            for metadata in [
                (("authorization", f"Bearer {WRONG_TOKEN}"),),
                (("authorization", WRONG_TOKEN),),
                (),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetInfo(llm_pb2.GetInfoRequest(), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ask = llm_pb2.ChatRequest(messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content="Hi")])
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Chat(ask, metadata=good, timeout=30)
            assert API_KEY not in (err.value.details() or "")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as page:
            metrics = page.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        logs = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
    # The run did log the refusals and the cloud's error, and counted them.
    assert '"reason": "unauthenticated"' in logs
    assert (
        'voice_rpcs_refused_total{method="/voice.llm.v1.LlmService/GetInfo",reason="unauthenticated"} 3.0'
        in metrics
    )
    for secret in (API_KEY, TOKEN_A, WRONG_TOKEN):
        assert secret not in logs, f"a secret is in the log: {secret[:4]}..."
        assert secret not in metrics
