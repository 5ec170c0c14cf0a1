"""The fleet end to end: the images built here, `compose up` of 2 API replicas behind nginx, Redis and
PostgreSQL, and every check through the load balancer's port on 127.0.0.1 (README "Deploying").

One compose project for the module (its own network and volumes; `down -v` at the end), so the tests share one
xdist worker. The last test stops a replica, so it runs last (file order).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.dockerhost import Fleet, build_env, build_images, docker_unavailable, fleet_up
from tests.redisserver import free_port

pytestmark = [pytest.mark.slow, pytest.mark.fleet, pytest.mark.xdist_group("fleet"), pytest.mark.timeout(1200)]

KEY = "fleet-test-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    env = {**build_env(free_port()), "AISLE_API_KEYS": KEY, "AISLE_PG_PASSWORD": uuid.uuid4().hex}
    build_images(env)
    with fleet_up(f"aislefleet{uuid.uuid4().hex[:8]}", env) as up:
        try:
            _wait_ready(up.url)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{up.logs()}") from None
        yield up


def _wait_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url}/ready did not answer 200 within {seconds} s")


def _upstream(response: httpx.Response) -> str:
    """The replica nginx sent the request to (its address), from the header the load balancer adds."""
    return response.headers["x-aisle-upstream"]


def _recommend(client: httpx.Client, user: str) -> tuple[list[str], str, dict[str, Any]]:
    r = client.get(f"/users/{user}/recommendations", params={"k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    return [i["item_id"] for i in body["items"]], _upstream(r), body


def _items(client: httpx.Client, n: int) -> list[str]:
    r = client.get("/trending", params={"k": n})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def test_an_event_posted_through_one_replica_changes_the_next_answer_from_the_other(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, timeout=10) as client:
        user = f"fleet-shopper-{uuid.uuid4().hex[:6]}"
        before, _, _ = _recommend(client, user)
        viewed = _items(client, 40)[-3:]  # not the top of trending, which a new shopper is shown already
        r = client.post("/events", headers=AUTH, json={"events": [
            {"user_id": user, "item_id": item, "event_type": "view", "event_id": f"{user}-{n}"}
            for n, item in enumerate(viewed)]})
        assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0}, r.text
        posted_on = _upstream(r)
        answers: dict[str, list[str]] = {}
        for _ in range(10):  # round robin: the next requests land on both replicas
            items, on, body = _recommend(client, user)
            assert body["history_length"] == 3, body
            answers[on] = items
        assert len(answers) == 2, f"all answers came from {set(answers)}: is the load balancer balancing?"
        other = next(on for on in answers if on != posted_on)
        assert answers[other] != before, "the replica that did not take the events answers as before them"
        assert answers[other] == answers[posted_on], "the replicas disagree about the same shopper"
        assert not set(answers[other]) & set(viewed), "viewed items came back as recommendations"


def test_search_through_the_load_balancer_finds_a_catalog_item_by_its_title(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, timeout=10) as client:
        item = _items(client, 5)[0]
        page = client.get(f"/api/web/items/{item}")
        assert page.status_code == 200, page.text
        title = page.json()["title"]
        r = client.get("/search", params={"q": title, "page_size": 10})
        assert r.status_code == 200, r.text
        assert item in [hit["item_id"] for hit in r.json()["hits"]], (title, r.json())
        assert client.get("/search", params={"q": title, "page": 0}).status_code == 422


# Every Redis key whose name or value holds ARGV[1], but the erasure records (which hold the erased ids by design)
_REDIS_HITS = """
local hits = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  if k ~= 'aisle:erased' and k ~= 'aisle:stream:erasures' then
    local t = redis.call('TYPE', k).ok
    local text = k
    if t == 'string' then text = text .. ' ' .. redis.call('GET', k)
    elseif t == 'list' then text = text .. ' ' .. table.concat(redis.call('LRANGE', k, 0, -1), ' ')
    elseif t == 'set' then text = text .. ' ' .. table.concat(redis.call('SMEMBERS', k), ' ')
    elseif t == 'hash' then text = text .. ' ' .. table.concat(redis.call('HGETALL', k), ' ')
    elseif t == 'zset' then text = text .. ' ' .. table.concat(redis.call('ZRANGE', k, 0, -1), ' ')
    elseif t == 'stream' then
      for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do text = text .. ' ' .. table.concat(e[2], ' ') end
    end
    if string.find(text, ARGV[1], 1, true) then table.insert(hits, k) end
  end
end
return hits
"""


def _stored_events(fleet: Fleet, user: str) -> int:
    return int(fleet.sql(f"SELECT count(*) FROM events WHERE user_id = '{user}' OR query LIKE '%{user}%'"))


def test_erasing_a_shopper_leaves_nothing_of_theirs_in_postgresql_redis_or_answers(fleet: Fleet) -> None:
    """A shopper of the bundle (history in the trained bundle and in PostgreSQL) posts 3 more events, one a search
    text; once the stream consumers stored them, an erase through the load balancer leaves nothing."""
    with httpx.Client(base_url=fleet.url, timeout=10) as client:
        user = client.get("/api/web/users", params={"k": 1}).json()["users"][0]["user_id"]
        _, _, body = _recommend(client, user)
        assert body["known_user"] and body["history_length"] > 0, body
        stored = _stored_events(fleet, user)
        assert stored > 0, "the init job did not store the synthetic shoppers' events in PostgreSQL"
        items = _items(client, 10)
        r = client.post("/events", headers=AUTH, json={"events": [
            {"user_id": user, "item_id": items[0], "event_type": "view", "event_id": f"{user}-fleet-1"},
            {"user_id": user, "item_id": items[1], "event_type": "add_to_cart"},
            {"user_id": user, "event_type": "search", "query": f"secret wish of {user}", "event_id": f"{user}-3"}]})
        assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
        deadline = time.monotonic() + 60  # the replicas' stream consumers write them to PostgreSQL
        while _stored_events(fleet, user) < stored + 3:
            assert time.monotonic() < deadline, "the events never reached PostgreSQL"
            time.sleep(0.5)
        assert _redis_hits(fleet, user), "nothing of the shopper in Redis: the check below would prove nothing"

        r = client.delete(f"/users/{user}", headers=AUTH)
        assert r.status_code == 200, r.text
        # the lists the replicas served them reach Redis a flush later and the store after that: the consumers
        # drop them (served before the erasure); wait until none is left in the impression stream
        time.sleep(1.5)
        deadline = time.monotonic() + 60
        while int(fleet.exec("redis", "redis-cli", "XLEN", "aisle:impressions").strip() or 0):
            assert time.monotonic() < deadline, "the impression stream was never consumed"
            time.sleep(0.5)

        assert _stored_events(fleet, user) == 0
        assert fleet.sql(f"SELECT count(*) FROM impressions WHERE user_id = '{user}'") == "0"
        assert fleet.sql(f"SELECT count(*) FROM users WHERE user_id = '{user}'") == "0"
        assert _redis_hits(fleet, user) == []
        seen = set()
        for _ in range(4):  # both replicas answer as for a shopper never seen
            _, on, body = _recommend(client, user)
            assert body["history_length"] == 0 and not body["known_user"], body
            seen.add(on)
        assert len(seen) == 2
        listed = client.get("/api/web/users", params={"k": 50}).json()["users"]
        assert user not in [u["user_id"] for u in listed]


def _redis_hits(fleet: Fleet, user: str) -> list[str]:
    return fleet.exec("redis", "redis-cli", "EVAL", _REDIS_HITS, "0", user).split()


def test_stopping_a_replica_under_steady_load_fails_at_most_the_requests_in_flight_on_it(fleet: Fleet) -> None:
    clients, failures, done = 4, [], []
    stop = threading.Event()

    def load(n: int) -> None:
        with httpx.Client(base_url=fleet.url, timeout=10) as client:
            items = _items(client, 50)
            i = 0
            while not stop.is_set():
                i += 1
                user = f"load-{n}-{i % 20}"
                try:
                    if i % 3:
                        r = client.get(f"/users/{user}/recommendations", params={"k": 10})
                    else:
                        r = client.post("/events", headers=AUTH, json={"events": [
                            {"user_id": user, "item_id": items[i % 50], "event_type": "view",
                             "event_id": f"load-{n}-{i}"}]})
                    (done if r.status_code == 200 else failures).append((time.monotonic(), r.status_code))
                except httpx.HTTPError as exc:
                    failures.append((time.monotonic(), repr(exc)))

    threads = [threading.Thread(target=load, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(5)
    before = len(done)
    fleet.compose("stop", "-t", "30", "api-2")
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    after = len(done) - before
    assert before > 20 and after > 20, f"the load did not run: {before} before, {after} during and after the stop"
    # each client has one request in flight at a time: at most `clients` of them can be on the stopped replica
    assert len(failures) <= clients, failures[:10]
    r = httpx.get(f"{fleet.url}/ready", timeout=5)
    assert r.status_code == 200 and r.json()["ready"]
