"""Exit 0 when a gRPC server reports SERVING: ``python -m services.common.healthcheck HOST:PORT [PREFIX]``.

Inside a service's container it speaks TLS when the service does: it reads the same
``<PREFIX>_TLS_CERT``/``_KEY``/``_CLIENT_CA`` (PREFIX found from the one ``*_TLS_CERT``
set, or given), trusts ``<PREFIX>_TLS_CA``, else the client CA, else the certificate
file (a full chain), and shows the service's own certificate when mutual TLS asks for one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _prefix() -> str:
    found = [
        name[: -len("TLS_CERT")] for name, value in os.environ.items() if name.endswith("_TLS_CERT") and value
    ]
    return found[0] if len(found) == 1 else ""


def channel(target: str, prefix: str) -> grpc.Channel:
    env = os.environ.get
    cert = env(f"{prefix}TLS_CERT", "") if prefix else ""
    if not cert:
        return grpc.insecure_channel(target)
    key, client_ca = env(f"{prefix}TLS_KEY", ""), env(f"{prefix}TLS_CLIENT_CA", "")
    root = env(f"{prefix}TLS_CA", "") or client_ca or cert
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(root).read_bytes(),
        private_key=Path(key).read_bytes() if client_ca else None,
        certificate_chain=Path(cert).read_bytes() if client_ca else None,
    )
    return grpc.secure_channel(target, credentials)


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    prefix = sys.argv[2] if len(sys.argv) > 2 else _prefix()
    try:
        with channel(target, prefix) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.RpcError as exc:
        print(f"{target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{target}: cannot read a TLS file: {exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
