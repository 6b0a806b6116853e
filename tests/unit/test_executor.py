"""Choosing where rows and cases are computed: ``executor:`` in a pipeline and ``--executor/--address``,
checked before anything runs; a Ray address is parsed and refused early when it cannot be one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.errors import ConfigError, InvalidRequest
from llmdock.jobs.executor import LOCAL, ExecutorSpec, chosen
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.jobs.ray_executor import endpoint
from llmdock.plugins import load_plugins


def test_the_flags_override_the_files_executor_and_an_address_alone_means_ray() -> None:
    assert chosen(None, None, None) is LOCAL
    assert chosen(None, "10.0.0.5:6379", None) == ExecutorSpec(kind="ray", address="10.0.0.5:6379")
    base = ExecutorSpec(kind="ray", address="ray://head:10001", workers=3)
    assert chosen("local", None, None, base).kind == "local"
    assert chosen(None, None, 2, base) == ExecutorSpec(kind="ray", address="ray://head:10001", workers=2)
    with pytest.raises(InvalidRequest, match="--executor: Input should be 'local' or 'ray'"):
        chosen("dask", None, None)


def test_a_pipeline_names_its_executor_by_name_or_in_full_and_a_bad_one_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    steps = load_plugins().job_steps
    body = "steps:\n  - id: a\n    uses: shell\n    with: {run: echo hi}\n"
    path = tmp_path / "p.yaml"
    path.write_text("executor: ray\n" + body)
    assert load_pipeline(path, steps, {}).executor == ExecutorSpec(kind="ray")
    path.write_text("executor: {kind: ray, address: 'ray://head:10001', workers: 2}\n" + body)
    assert load_pipeline(path, steps, {}).executor.workers == 2
    assert load_pipeline(tmp_path / "p.yaml", steps, {}).executor.remote
    path.write_text("name: x\nexecutor: {kind: ray, workers: 0}\n" + body)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, steps, {})
    assert f"{path}:2: executor.workers" in err.value.one_line()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379, "127.0.0.1:6379")),
        ("ray://head.svc:10001", ("head.svc", 10001, "ray://head.svc:10001")),
        ("ray://head.svc", ("head.svc", 10001, "ray://head.svc")),
    ],
)
def test_a_ray_address_is_host_port_or_a_ray_url(address: str, expected: tuple[str, int, str]) -> None:
    assert endpoint(address) == expected


@pytest.mark.parametrize("address", ["http://head:8265", "head:port"])
def test_an_address_that_cannot_be_rays_is_refused_before_connecting(address: str) -> None:
    with pytest.raises(ConfigError, match="--address"):
        endpoint(address)


class FlakyRay:
    """``ray`` as ``connect`` uses it: ``init`` fails ``failures`` times, then joins; every call is recorded."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.joined = False

    def is_initialized(self) -> bool:
        return self.joined

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self.joined = False

    def init(self, address: str, **_: object) -> None:
        self.calls.append(f"init {address}")
        if self.failures:
            self.failures -= 1
            self.joined = True  # what a half-made client join leaves behind
            raise RuntimeError("Starting Ray client server failed. See ray_client_server_23000.err")
        self.joined = True


@pytest.mark.parametrize("failures", [0, 2, 3])
def test_a_ray_client_join_whose_server_dies_while_starting_is_retried_and_a_failure_leaves_a_clean_state(
    monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    from llmdock.jobs import ray_executor
    from llmdock.jobs.executor import ExecutorUnavailable

    fake = FlakyRay(failures)
    monkeypatch.setattr(ray_executor, "_ray", lambda: fake)
    monkeypatch.setattr(ray_executor, "probe", lambda spec: spec.address)
    monkeypatch.setattr(ray_executor, "CLIENT_RETRY_S", 0.0)
    spec = ExecutorSpec(kind="ray", address="ray://head:10001")
    if failures < ray_executor.CLIENT_ATTEMPTS:
        ray_executor.connect(spec)
        assert fake.joined
        assert fake.calls == ["init ray://head:10001", "shutdown"] * failures + ["init ray://head:10001"]
    else:
        with pytest.raises(
            ExecutorUnavailable, match=r"ray://head:10001 \(3 tries\): Starting Ray client server"
        ):
            ray_executor.connect(spec)
        assert not fake.joined  # the next connect in this process starts clean
        assert fake.calls.count("init ray://head:10001") == 3


def test_a_gcs_address_is_joined_once_since_ray_init_retries_it_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmdock.jobs import ray_executor
    from llmdock.jobs.executor import ExecutorUnavailable

    fake = FlakyRay(1)
    monkeypatch.setattr(ray_executor, "_ray", lambda: fake)
    monkeypatch.setattr(ray_executor, "probe", lambda spec: spec.address)
    with pytest.raises(ExecutorUnavailable, match="at 10.0.0.5:6379: Starting"):
        ray_executor.connect(ExecutorSpec(kind="ray", address="10.0.0.5:6379"))
    assert fake.calls == ["init 10.0.0.5:6379", "shutdown"]
    assert not fake.joined
