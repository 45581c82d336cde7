"""Whether a gRPC service is up and its model ready: the standard health check, for clients."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from foundation.channels import Security, open_channel


def unreachable(service: str, address: str, err: grpc.aio.AioRpcError) -> str:
    """What a person reads when ``service`` at ``address`` failed a call with ``err``."""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return (
            f"the {service} service at {address} is unreachable ({err.details()}); "
            f"start it with `docker compose up -d {service}`"
        )
    return f"the {service} service at {address} answered {err.code().name}: {err.details()}"


async def serving(channel: grpc.aio.Channel, timeout_s: float = 5.0) -> bool:
    """True when the service answers SERVING (its model is loaded); raises AioRpcError when unreachable."""
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=timeout_s
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def status(channel: grpc.aio.Channel, timeout_s: float) -> str:
    """The service's health in a word: SERVING, NOT_SERVING, or the failed call's status code."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def check_reachable(addresses: dict[str, str], security: Security, timeout_s: float = 3.0) -> list[str]:
    """Problems with each service that does not answer its health check in time."""
    problems = []
    for name, address in addresses.items():
        async with open_channel(address, security) as channel:
            try:
                if not await serving(channel, timeout_s):
                    problems.append(
                        f"the {name} service at {address} is starting (its model is loading); wait"
                    )
            except grpc.aio.AioRpcError as err:
                problems.append(unreachable(name, address, err))
    return problems
