"""The coordination layer's pure parts: the --coordination URL, replica placement, and the
controller's leader and ISR decisions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from brokerd.coordination.leadership import initial_state, reconcile
from brokerd.coordination.placement import PlacementError, assign_replicas
from brokerd.coordination.records import NO_LEADER, IsrMember, PartitionState
from brokerd.coordination.url import CoordinationUrlError, parse_coordination_url


# --- the URL ---------------------------------------------------------------------------------------
def test_url_with_several_endpoints_and_a_nested_prefix() -> None:
    url = parse_coordination_url("etcd://127.0.0.1:2379,10.0.0.2:2380,[::1]:2381/kastle/clusters/c1")
    assert url.endpoints == (("127.0.0.1", 2379), ("10.0.0.2", 2380), ("::1", 2381))
    assert url.prefix == "/kastle/clusters/c1/"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("http://127.0.0.1:2379/x", "expected etcd://"),
        ("etcd://127.0.0.1:2379", "no key prefix"),
        ("etcd://127.0.0.1:2379/", "prefix is empty"),
        ("etcd://127.0.0.1/x", "not HOST:PORT"),
        ("etcd://127.0.0.1:99999/x", "not HOST:PORT"),
        ("etcd://127.0.0.1:2379/a//b", "single '/'"),
        ("etcd://127.0.0.1:2379/a b", "may only hold"),
    ],
)
def test_bad_urls_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(CoordinationUrlError, match=complaint):
        parse_coordination_url(text)


# --- placement -------------------------------------------------------------------------------------
def test_placement_spreads_leaders_and_replicas_evenly() -> None:
    brokers = {1: None, 2: None, 3: None}
    assignment = assign_replicas(brokers, 6, 3, rng=random.Random(1))
    assert all(sorted(replicas) == [1, 2, 3] for replicas in assignment)
    assert Counter(replicas[0] for replicas in assignment) == {1: 2, 2: 2, 3: 2}


def test_placement_puts_replicas_on_distinct_racks() -> None:
    brokers = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    for seed in range(20):
        for replicas in assign_replicas(brokers, 12, 3, rng=random.Random(seed)):
            assert len({brokers[b] for b in replicas}) == 3, replicas


def test_placement_refuses_more_replicas_than_brokers() -> None:
    with pytest.raises(PlacementError, match="larger than the 2 available"):
        assign_replicas({1: None, 2: None}, 1, 3)


# --- leadership --------------------------------------------------------------------------------------
def _state(leader: int, isr: list[tuple[int, int]], replicas=(1, 2, 3)) -> PartitionState:
    return PartitionState("t", tuple(replicas), leader, 4, tuple(IsrMember(*m) for m in isr), 9)


def test_a_dead_leader_is_replaced_from_the_isr_with_a_new_leader_epoch() -> None:
    state = _state(1, [(1, 10), (2, 20), (3, 30)])
    new = reconcile(state, {2: 20, 3: 30})
    assert new is not None
    assert (new.leader, new.isr_ids, new.leader_epoch, new.partition_epoch) == (2, (2, 3), 5, 10)


def test_the_replica_in_sync_the_longest_leads_not_one_that_just_rejoined() -> None:
    # 1 restarted and rejoined the ISR last; when 2 dies, 3 leads although 1 comes first in
    # replica order (clients may still be backing off from 1).
    state = _state(2, [(2, 20), (3, 30), (1, 11)])
    new = reconcile(state, {1: 11, 3: 30})
    assert new is not None and (new.leader, new.isr_ids) == (3, (3, 1))


def test_a_dead_follower_leaves_the_isr_and_the_leader_epoch_stays() -> None:
    new = reconcile(_state(1, [(1, 10), (2, 20), (3, 30)]), {1: 10, 2: 20})
    assert new is not None and (new.leader, new.isr_ids, new.leader_epoch) == (1, (1, 2), 4)


def test_nothing_changes_when_every_isr_member_is_alive() -> None:
    assert reconcile(_state(1, [(1, 10), (2, 20)]), {1: 10, 2: 20, 3: 30}) is None


def test_a_restarted_broker_leaves_the_isr_because_its_epoch_changed() -> None:
    new = reconcile(_state(1, [(1, 10), (2, 20)]), {1: 10, 2: 21})
    assert new is not None and new.isr_ids == (1,)


def test_no_unclean_election_a_replica_outside_the_isr_never_leads() -> None:
    # Only 3 is alive, and it is not in the ISR: the partition goes offline, keeping its
    # last in-sync member.
    new = reconcile(_state(1, [(1, 10)]), {3: 30})
    assert new is not None and (new.leader, new.isr_ids) == (NO_LEADER, (1,))
    assert reconcile(new, {3: 30}) is None


def test_unclean_election_only_when_the_topic_allows_it() -> None:
    new = reconcile(_state(1, [(1, 10)]), {3: 30}, unclean=True)
    assert new is not None and (new.leader, new.isr) == (3, (IsrMember(3, 30),))


def test_the_last_isr_member_leads_again_when_it_returns() -> None:
    offline = _state(NO_LEADER, [(1, 10)])
    new = reconcile(offline, {1: 11, 3: 30})
    assert new is not None and (new.leader, new.isr) == (1, (IsrMember(1, 11),))
    assert new.leader_epoch == offline.leader_epoch + 1


def test_the_same_broker_leading_after_a_restart_gets_a_new_leader_epoch() -> None:
    new = reconcile(_state(1, [(1, 10)]), {1: 12})
    assert new is not None and new.leader == 1 and new.leader_epoch == 5


def test_a_new_partition_has_every_replica_in_sync() -> None:
    state = initial_state("id", [2, 3, 1], {1: 10, 2: 20, 3: 30})
    assert (state.leader, state.isr_ids, state.leader_epoch) == (2, (2, 3, 1), 0)



def test_the_high_watermark_counts_kafkas_maximal_isr() -> None:
    """A follower the leader has asked etcd to add counts at once (etcd may commit it at any
    moment, and then nothing it lacks may have been acknowledged), and one the leader has
    asked to remove keeps counting until the removal is committed."""
    from brokerd.replication.leader import Leadership

    committed = _state(1, [(1, 10), (2, 20)])
    leadership = Leadership(leader_epoch=4, high_watermark=0)
    leadership.follower(2).log_end = 5  # lagging: were its removal asked, it still counts
    leadership.follower(3).log_end = 5  # caught up to the high watermark: asked to join
    assert leadership.advance(committed, 1, 100) and leadership.high_watermark == 5
    leadership.joining.add(3)
    leadership.follower(2).log_end = 60
    assert not leadership.advance(committed, 1, 100)  # the joiner holds it back
    leadership.follower(3).log_end = 40
    assert leadership.advance(committed, 1, 100) and leadership.high_watermark == 40
