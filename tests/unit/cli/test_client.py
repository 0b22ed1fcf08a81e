"""CorralClient against the fake API: requests, typed replies, errors, polling."""

from __future__ import annotations

import socket

import httpx
import pytest

from scheduler.client import CorralClient, CorralError
from scheduler.domain.spec import JobSpec, QueuePatch, QueueSpec

from .conftest import SERVER
from .fake_api import TOKEN, FakeCorral, FakeLog, gpu_dict, node_dict


def test_submit_sends_the_spec_the_token_and_the_key(
    client: CorralClient, fake: FakeCorral
) -> None:
    job = client.submit(JobSpec(command=["python", "train.py"], name="t"), "key-1")
    assert job.id == 1 and job.name == "t" and job.status == "pending"
    request = fake.requests[-1]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert fake.bodies("POST", "/api/v1/jobs") == [{"command": ["python", "train.py"], "name": "t"}]
    assert client.submit(JobSpec(command=["x"]), "key-1").id == 1  # the key was seen


def test_list_jobs_sends_filters_as_query_parameters(
    client: CorralClient, fake: FakeCorral
) -> None:
    fake.add_job("running")
    fake.add_job("pending")
    found = client.list_jobs(
        status=["pending", "running"], queue="q", name="n", limit=5, before_id=9
    )
    params = fake.requests[-1].url.params
    assert params["status"] == "pending,running"
    assert (params["queue"], params["name"], params["limit"], params["before_id"]) == (
        "q",
        "n",
        "5",
        "9",
    )
    assert [job.id for job in found.jobs] == [2, 1]


def test_iter_jobs_pages_through_everything(client: CorralClient, fake: FakeCorral) -> None:
    for _ in range(5):
        fake.add_job()
    assert [job.id for job in client.iter_jobs(page_size=2)] == [5, 4, 3, 2, 1]
    assert len(fake.requests) == 3


def test_an_error_body_becomes_one_readable_error(client: CorralClient) -> None:
    with pytest.raises(CorralError) as caught:
        client.submit(JobSpec(command=["x"], queue="nope"))
    assert caught.value.status == 422
    assert caught.value.code == "unknown_queue"
    assert caught.value.field == "queue"
    assert str(caught.value) == "queue: no queue 'nope'"


def test_a_message_that_names_its_field_is_not_prefixed_twice() -> None:
    assert str(CorralError("resources.gpus: must be >= 0", field="resources.gpus")) == (
        "resources.gpus: must be >= 0"
    )


def test_a_non_json_error_still_reads_well() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502, text="<h1>Bad gateway</h1>"))
    with (
        CorralClient(SERVER, TOKEN, transport=transport) as client,
        pytest.raises(CorralError) as caught,
    ):
        client.list_queues()
    assert str(caught.value) == "HTTP 502: <h1>Bad gateway</h1>"


def test_a_missing_token_says_how_to_give_one(fake: FakeCorral) -> None:
    with (
        CorralClient(SERVER, None, transport=fake.transport) as client,
        pytest.raises(CorralError) as caught,
    ):
        client.list_jobs()
    assert caught.value.status == 401
    assert "pass --token or set CORRAL_TOKEN" in str(caught.value)


def test_an_unexpected_reply_is_a_corral_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"hello": 1}))
    with (
        CorralClient(SERVER, TOKEN, transport=transport) as client,
        pytest.raises(CorralError) as caught,
    ):
        client.get_job(1)
    assert "unexpected reply" in str(caught.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_says_the_server_cannot_be_reached() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with CorralClient(url, TOKEN, timeout_s=5) as client, pytest.raises(CorralError) as caught:
        client.health()
    assert str(caught.value) == f"cannot reach the corral server at {url} (is it running?)"
    assert caught.value.status is None


def test_a_read_timeout_says_so() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    transport = httpx.MockTransport(slow)
    with (
        CorralClient(SERVER, TOKEN, timeout_s=2, transport=transport) as client,
        pytest.raises(CorralError) as caught,
    ):
        client.list_nodes()
    assert str(caught.value) == f"the corral server at {SERVER} did not answer within 2s"


def test_health_needs_no_token(fake: FakeCorral) -> None:
    with CorralClient(SERVER + "/", None, transport=fake.transport) as client:
        assert client.health().status == "ok"
    assert fake.requests[-1].url == httpx.URL(SERVER + "/healthz")


def test_wait_polls_until_a_terminal_status(client: CorralClient, fake: FakeCorral) -> None:
    job = fake.add_job()
    fake.script(
        job["id"],
        {"status": "starting"},
        {"status": "running"},
        {"status": "succeeded", "exit_code": 0},
    )
    seen: list[str] = []
    done = client.wait(job["id"], on_update=lambda view: seen.append(view.status))
    assert done.status == "succeeded"
    assert seen == ["starting", "running", "succeeded"]


def test_wait_gives_up_after_its_timeout(fake: FakeCorral) -> None:
    job = fake.add_job("running")
    with (
        CorralClient(SERVER, TOKEN, transport=fake.transport, sleep=lambda _: None) as client,
        pytest.raises(CorralError) as caught,
    ):
        client.wait(job["id"], timeout_s=0)
    assert str(caught.value) == f"job {job['id']} is still running after 0s"


def test_iter_logs_reads_what_exists_then_stops(client: CorralClient, fake: FakeCorral) -> None:
    job = fake.add_job("running", attempts_count=1)
    fake.logs[(job["id"], 1)] = FakeLog(["a\n", "b\n"], ended=False)
    text = "".join(chunk.data for chunk in client.iter_logs(job["id"]))
    assert text == "a\nb\n"


def test_follow_moves_to_the_next_attempt_and_stops_when_the_job_ends(
    client: CorralClient, fake: FakeCorral
) -> None:
    job = fake.add_job("running", attempts_count=1)
    fake.logs[(job["id"], 1)] = FakeLog(["one\n", "preempted\n"])
    fake.logs[(job["id"], 2)] = FakeLog(["two\n", "done\n"])
    fake.script(
        job["id"],
        {"status": "running"},
        {"status": "pending"},
        {"status": "running", "attempts_count": 2},
        {"status": "succeeded"},
    )
    chunks = list(client.iter_logs(job["id"], follow=True))
    assert "".join(c.data for c in chunks) == "one\npreempted\ntwo\ndone\n"
    assert [c.attempt for c in chunks] == [1, 1, 2, 2]


def test_follow_of_a_job_cancelled_before_it_ran_ends_at_once(
    client: CorralClient, fake: FakeCorral
) -> None:
    job = fake.add_job("cancelled")
    assert list(client.iter_logs(job["id"], follow=True)) == []


def test_queue_and_node_calls_return_views(client: CorralClient, fake: FakeCorral) -> None:
    created = client.create_queue(QueueSpec(name="research", weight=2, guaranteed_gpus=4))
    assert (created.name, created.weight, created.guaranteed_gpus) == ("research", 2.0, 4)
    updated = client.update_queue("research", QueuePatch(max_gpus=8))
    assert updated.max_gpus == 8
    assert fake.bodies("PATCH", "/api/v1/queues/research") == [{"max_gpus": 8}]
    assert [q.name for q in client.list_queues().queues] == ["default", "research"]
    fake.nodes["n1"] = node_dict("n1", gpus=[gpu_dict(0), gpu_dict(1)])
    assert [g.uuid for g in client.get_node("n1").gpus or []] == ["GPU-0000", "GPU-0001"]
    assert client.drain("n1", "fan").drain_reason == "fan"
    assert client.undrain("n1").state == "up"
    assert client.get_queue("research").max_gpus == 8


def test_drain_without_a_reason_lets_the_server_choose(
    client: CorralClient, fake: FakeCorral
) -> None:
    fake.nodes["n1"] = node_dict("n1")
    assert client.drain("n1").drain_reason == "drained by an operator"
    assert fake.bodies("POST", "/api/v1/nodes/n1/drain") == [{}]


def test_names_are_one_path_segment(client: CorralClient, fake: FakeCorral) -> None:
    with pytest.raises(CorralError):
        client.get_node("a/drain")
    assert fake.requests[-1].url.raw_path == b"/api/v1/nodes/a%2Fdrain"
